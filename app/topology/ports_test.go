package topology

import "testing"

// The addresses of a start are distinct: 50 starts of 8 instances with an
// operator listener each (and the topology's Redis), the way Run takes
// them, give no address twice within a start. Releasing them all between
// starts lets the kernel reuse ports across starts, as it may.
func TestPortsAreDistinctWithinAStart(t *testing.T) {
	for start := range 50 {
		p := newPorts()
		seen := map[string]bool{}
		for range 8*2 + 1 {
			a, err := p.take()
			if err != nil {
				t.Fatal(err)
			}
			if seen[a] {
				t.Fatalf("start %d: %s handed out twice", start+1, a)
			}
			seen[a] = true
		}
		p.releaseAll()
	}
}
