//go:build !unix

package app

// lockDataDir does nothing where flock is not available.
func lockDataDir(string) (func(), error) { return func() {}, nil }
