//go:build !draHealth

package main

import "k8s.io/dynamic-resource-allocation/kubeletplugin"

func healthOptions() []kubeletplugin.Option { return nil }
