// Package e2e holds privileged end-to-end tests of the sonde binary: each test
// builds its own network namespaces and veth pairs (internal/netnstest), runs
// `sonde run` inside one of them, sends exact frames from the other, stops the
// daemon and checks the published pcap ring with a reader independent of
// sonde's writer and with tcpdump and capinfos.
//
// The tests skip when not root, and fail instead when CI=true.
package e2e
