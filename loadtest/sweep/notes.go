package sweep

// stepNotes say, per step, what it buys and where it shows on each ladder
// (the stage docs say why); a stage added later adds its line here.
var stepNotes = map[int]string{
	1: "**Buys:** no process, connection and template parse per request. **Shows:** each step alone, on the aggregate; as the tags build it, on the server CPU per request and the routes with the least SQL (`thumb`, `upload-form`), since table scans bound the rest.",
	2: "**Buys:** sessions stop loading the database. **Shows:** each step alone, on the aggregate and the PostgreSQL CPU per request; as the tags build it, within the noise behind the scans (`upload-form`, the session and nothing else, waits in the server's in-flight line with the pages that scan).",
	3: "**Buys:** the hot reads (and images) without the database. **Shows:** each step alone, on the aggregate; as the tags build it, on `home` (its p99 becomes a cache hit's) and the PostgreSQL CPU per request, while the total p99 is still a miss that scans a table.",
	4: "**Buys:** no table scans. **Shows:** as the tags build it, on everything (the aggregate, every route, the p99). Each step alone: stages 0-3 already had the indexes, so the ratio is the run-to-run noise.",
	5: "**Buys:** a page's independent lookups at once (errgroup), so a page waits for its longest chain of round trips, not their sum. **Shows:** with `--db-latency 1ms`, on the `photo` p50 (in `sweep.json`) and p99; at loopback (a round trip of microseconds) it buys no latency and, on a CPU-bound machine, costs throughput.",
	6: "**Buys:** uploads answer at once; workers make the images. **Shows:** not in the browse mix, which has no uploads (expect the noise: the grids read one more column); the upload p99 and the drain are measured by `--scenario upload` (docs/stages/06-queue.md).",
	7: "**Buys:** instances that can be killed or replaced without a failed GET or a lost session, and photo files served by nginx from disk. **Shows:** on the image routes (`thumb`, `image`: nginx's sendfile, a p99 of milliseconds) and in the CPU table (the server side counts nginx, the instances and the supervisor); on one shared machine the pages pay nginx's hop, so the aggregate moves little (docs/stages/07-scale-out.md).",
	8: "**Buys:** anonymous visitors' pages from memcached through nginx, no instance reached. **Shows:** with anonymous visitors (`--anonymous 0.9`), in the front cache's hit ratio per route and the p99 of the listings it answers; the aggregate is bound by what misses (photo pages spread over 1.5M photos) and by the CPU the load tool and nginx share with everything else on one machine. The logged-in mix goes through as at stage 7 (docs/stages/08-front-cache.md).",
}
