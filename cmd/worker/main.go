// Command worker runs Sando's phases from the shared Redis. Run any number
// of them, on any number of hosts.
package main

import "sando.dev/sando/internal/app"

func main() { app.Main("sando-worker", app.Worker) }
