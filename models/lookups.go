package models

import "context"

// Lookups runs a page's independent lookups: each function fills its own
// part of the page (its own variables), so they may run in any order or at
// once. The page assembly (the stores here, the views in app/) says which
// lookups are independent; the stage says how they run: Sequential before
// stage 5, concurrently (errgroup) at stage 5 (app/stage5_fanout.go).
type Lookups interface {
	// Run runs fns and returns the first error. Each fn must use the ctx it
	// is given: a concurrent Run cancels it when another lookup fails.
	Run(ctx context.Context, fns ...func(context.Context) error) error
}

// Sequential runs lookups one after another, in order, and stops at the
// first error: exactly what the code did before it named its lookups.
type Sequential struct{}

// Run runs fns in order until one fails.
func (Sequential) Run(ctx context.Context, fns ...func(context.Context) error) error {
	for _, fn := range fns {
		if err := fn(ctx); err != nil {
			return err
		}
	}
	return nil
}
