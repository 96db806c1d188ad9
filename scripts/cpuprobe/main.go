// Command cpuprobe times a fixed piece of compute-bound work (sha256 over
// 1 MiB, 200 times: it stays in the CPU's cache) every few seconds and
// prints the time each took, for reading the speed of the machine's CPU
// beside a measurement (docs/scale-model.md, "Identical runs"): when two
// identical runs differ, did the CPU itself get slower between them?
//
//	go run ./scripts/cpuprobe --count 40 --every 3s
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"time"
)

func main() {
	count := flag.Int("count", 20, "how many probes")
	every := flag.Duration("every", 3*time.Second, "the pause between probes")
	flag.Parse()
	buf := make([]byte, 1<<20)
	for i := range *count {
		if i > 0 {
			time.Sleep(*every)
		}
		start := time.Now()
		for range 200 {
			sha256.Sum256(buf)
		}
		fmt.Printf("%s %.1f ms\n", time.Now().UTC().Format("15:04:05"), float64(time.Since(start).Microseconds())/1000)
	}
}
