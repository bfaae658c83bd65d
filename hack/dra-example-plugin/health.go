//go:build draHealth

package main

import (
	"context"

	"k8s.io/dynamic-resource-allocation/kubeletplugin"
)

// WatchHealthStatus: simulated devices have no health to report.  Releases whose helper asks
// for it are built with -tags draHealth (hack/node_build.py checks the helper's interface).
func (d *driver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	return kubeletplugin.ErrHealthNotSupported
}
