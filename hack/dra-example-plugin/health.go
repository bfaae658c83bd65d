//go:build draHealth

package main

import (
	"context"

	"k8s.io/dynamic-resource-allocation/kubeletplugin"
)

// Releases whose helper has a device-health service are built with -tags draHealth
// (hack/node_build.py looks for it).  Simulated devices have no health to report, so the
// service is off and the method, which the interface still requires, is never called.
func healthOptions() []kubeletplugin.Option {
	return []kubeletplugin.Option{kubeletplugin.HealthService(false)}
}

func (d *driver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	return kubeletplugin.ErrHealthNotSupported
}
