// Package fleet serves the sensor's /api/v1 read API for many sensors at
// once: `sonde fleet`.
//
// Members come from a static list, DNS (the A/AAAA records of a Kubernetes
// headless service) or the Kubernetes API (the pods of the DaemonSet),
// looked up again on every request. A request enters as an HTTP request
// to the fleet's own listener, with the fleet's own tokens; it is fanned
// out to every member at once, with the member credentials (a bearer token
// and/or a client certificate) and per-member timeouts, and the answers
// leave merged: pcap windows as one pcapng in time order with an interface
// per (node, interface) (Merge), captures as the union with the member
// named, reports as one report over the merged stream of all nodes. A
// member that fails or times out is named in the response, in headers,
// trailers and JSON, never silently left out.
package fleet
