package models

// HomeShard is stage 10's rule that places a new account: the shard a user id
// hashes to (splitmix64's finalizer, so that consecutive ids, and the
// ticket servers' odd and even ones, spread evenly). The ring, not the
// rule, says where a user is: a moved user stays where the move put them.
// The seed (seed --shards) places every seeded user with it; it lives
// here, not in models/shards, because the seed is in every workshop tag.
func HomeShard(userID int64, shards int) int {
	z := uint64(userID) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return int(z % uint64(shards))
}
