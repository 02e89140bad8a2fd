package main

func runInspect(e *env, args []string) error { return nil }
func runMerge(e *env, args []string) error   { return nil }
func runBench(e *env, args []string) error   { return nil }
