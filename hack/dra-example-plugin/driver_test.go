package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func opaque(source resourceapi.AllocationConfigSource, requests []string, raw string) resourceapi.DeviceAllocationConfiguration {
	return resourceapi.DeviceAllocationConfiguration{
		Source:   source,
		Requests: requests,
		DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
			Driver: driverName, Parameters: runtime.RawExtension{Raw: []byte(raw)},
		}},
	}
}

const timeSliceLong = `{"apiVersion":"gpu.resource.example.com/v1alpha1","kind":"GpuConfig","sharing":{"strategy":"TimeSlicing","timeSlicingConfig":{"interval":"Long"}}}`
const partitions3 = `{"apiVersion":"gpu.resource.example.com/v1alpha1","kind":"GpuConfig","sharing":{"strategy":"SpacePartitioning","spacePartitioningConfig":{"partitionCount":3}}}`

func TestConfigFor(t *testing.T) {
	configs := []resourceapi.DeviceAllocationConfiguration{
		opaque(resourceapi.AllocationConfigSourceClaim, []string{"b"}, partitions3),
		opaque(resourceapi.AllocationConfigSourceClass, nil, timeSliceLong),
	}
	for request, want := range map[string]sharing{
		"a":       {strategy: "TimeSlicing", interval: "Long"}, // class config, all requests
		"b":       {strategy: "SpacePartitioning", partitionCount: 3},
		"b/small": {strategy: "SpacePartitioning", partitionCount: 3}, // subrequest of b
	} {
		got, err := configFor(request, configs)
		if err != nil || got != want {
			t.Errorf("configFor(%q) = %+v, %v; want %+v", request, got, err, want)
		}
	}
	if got, _ := configFor("a", nil); got != defaultSharing {
		t.Errorf("no config: got %+v, want the default %+v", got, defaultSharing)
	}
	bad := []resourceapi.DeviceAllocationConfiguration{opaque(resourceapi.AllocationConfigSourceClaim, nil, `{"apiVersion":"gpu.resource.example.com/v1alpha1","kind":"GpuConfig","sharing":{"strategy":"MPS"}}`)}
	if _, err := configFor("a", bad); err == nil {
		t.Error("an unknown strategy must fail the preparation")
	}
}

func TestPrepareWritesAndUnprepareRemovesTheSpec(t *testing.T) {
	dir := t.TempDir()
	d := &driver{cdi: cdiWriter{dir: dir}}
	claim := &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns", UID: "uid-1"},
		Status: resourceapi.ResourceClaimStatus{Allocation: &resourceapi.AllocationResult{
			Devices: resourceapi.DeviceAllocationResult{
				Results: []resourceapi.DeviceRequestAllocationResult{
					{Request: "gpu", Driver: driverName, Pool: "node", Device: "gpu-3"},
					{Request: "gpu", Driver: "other.example.org", Pool: "node", Device: "x"},
				},
			},
		}},
	}
	res := d.prepare(claim)
	if res.Err != nil || len(res.Devices) != 1 || res.Devices[0].CDIDeviceIDs[0] != "k8s.gpu.example.com/gpu=uid-1-gpu-3" {
		t.Fatalf("prepare: %+v", res)
	}
	data, err := os.ReadFile(filepath.Join(dir, "k8s.gpu.example.com-uid-1.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"GPU_DEVICE_3=gpu-3",
		"GPU_DEVICE_3_RESOURCE_CLAIM=uid-1",
		"GPU_DEVICE_3_SHARING_STRATEGY=TimeSlicing",
		"GPU_DEVICE_3_TIMESLICE_INTERVAL=Default",
	}
	if got := env("uid-1", preparedDevice{name: "gpu-3", config: defaultSharing}); !reflect.DeepEqual(got, want) {
		t.Errorf("env = %v, want %v", got, want)
	}
	for _, line := range want {
		if !strings.Contains(string(data), line) {
			t.Errorf("spec lacks %q:\n%s", line, data)
		}
	}
	if err := d.cdi.remove("uid-1"); err != nil {
		t.Fatal(err)
	}
	if err := d.cdi.remove("uid-1"); err != nil {
		t.Errorf("a second unprepare must succeed: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}
