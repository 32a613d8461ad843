// Command hello is the sample project Sando's own sando.yaml builds, so a
// fresh clone shows a real green run: a compile, a stage and two gates.
package main

import "fmt"

func main() { fmt.Println(Greeting("sando")) }

// Greeting is what the unit gate tests.
func Greeting(name string) string { return "hello, " + name }
