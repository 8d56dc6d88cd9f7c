// Package test checks sonde's deployment files: the Helm chart and the plain
// Kubernetes manifests decoded strictly into the Kubernetes and
// prometheus-operator API types (a misspelt field fails), and, against a live
// sensor scraped by a live Prometheus, every query of the dashboards and
// rules. It is its own module so that sonde's dependency graph stays free of
// the Kubernetes libraries.
package test
