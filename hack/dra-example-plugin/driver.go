package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/utils/ptr"
)

const (
	driverName = "gpu.example.com"
	// Opaque configuration this driver accepts in claims and classes.
	configAPIVersion = "gpu.resource.example.com/v1alpha1"
	configKind       = "GpuConfig"
)

type driver struct {
	cdi    cdiWriter
	cancel context.CancelCauseFunc
}

// devices are the simulated GPUs, with the attributes and capacity upstream's example driver
// publishes (its default "gpu" profile).
func devices(node string, n int) []resourceapi.Device {
	out := make([]resourceapi.Device, 0, n)
	for i := 0; i < n; i++ {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s/gpu-%d", node, i)))
		uuid := fmt.Sprintf("gpu-%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
		out = append(out, resourceapi.Device{
			Name: fmt.Sprintf("gpu-%d", i),
			Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
				"index":         {IntValue: ptr.To(int64(i))},
				"uuid":          {StringValue: ptr.To(uuid)},
				"model":         {StringValue: ptr.To("LATEST-GPU-MODEL")},
				"driverVersion": {VersionValue: ptr.To("1.0.0")},
			},
			Capacity: map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{
				"memory": {Value: resource.MustParse("80Gi")},
			},
		})
	}
	return out
}

// PrepareResourceClaims writes one CDI spec per claim and hands the kubelet one CDI device per
// allocated GPU; the kubelet gives each container only the devices of the requests it names.
func (d *driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	result := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, claim := range claims {
		result[claim.UID] = d.prepare(claim)
	}
	return result, nil
}

func (d *driver) prepare(claim *resourceapi.ResourceClaim) kubeletplugin.PrepareResult {
	if claim.Status.Allocation == nil {
		return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s/%s is not allocated", claim.Namespace, claim.Name)}
	}
	alloc := claim.Status.Allocation.Devices
	var prepared []preparedDevice
	var devs []kubeletplugin.Device
	for _, r := range alloc.Results {
		if r.Driver != driverName {
			continue
		}
		cfg, err := configFor(r.Request, alloc.Config)
		if err != nil {
			return kubeletplugin.PrepareResult{Err: fmt.Errorf("claim %s/%s: %w", claim.Namespace, claim.Name, err)}
		}
		prepared = append(prepared, preparedDevice{name: r.Device, config: cfg})
		devs = append(devs, kubeletplugin.Device{
			Requests:     []string{r.Request},
			PoolName:     r.Pool,
			DeviceName:   r.Device,
			CDIDeviceIDs: []string{cdiID(claim.UID, r.Device)},
		})
	}
	if err := d.cdi.write(claim.UID, prepared); err != nil {
		return kubeletplugin.PrepareResult{Err: err}
	}
	return kubeletplugin.PrepareResult{Devices: devs}
}

// UnprepareResourceClaims removes the claim's CDI spec; it is keyed by the claim UID alone, so
// it works after a restart and for claims that were never prepared.
func (d *driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	result := make(map[types.UID]error, len(claims))
	for _, claim := range claims {
		result[claim.UID] = d.cdi.remove(claim.UID)
	}
	return result, nil
}

// gpuConfig is the example driver's opaque GpuConfig (only the sharing part).
type gpuConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Sharing    *struct {
		Strategy          string `json:"strategy"`
		TimeSlicingConfig *struct {
			Interval string `json:"interval"`
		} `json:"timeSlicingConfig,omitempty"`
		SpacePartitioningConfig *struct {
			PartitionCount int `json:"partitionCount"`
		} `json:"spacePartitioningConfig,omitempty"`
	} `json:"sharing,omitempty"`
}

// sharing is what reaches the container: the strategy and its one parameter.
type sharing struct {
	strategy, interval string
	partitionCount     int
}

var defaultSharing = sharing{strategy: "TimeSlicing", interval: "Default"}

// configFor applies the opaque configs that name this request (or every request), class
// configs before claim configs and later entries over earlier ones, as upstream does.
func configFor(request string, configs []resourceapi.DeviceAllocationConfiguration) (sharing, error) {
	out := defaultSharing
	for _, source := range []resourceapi.AllocationConfigSource{resourceapi.AllocationConfigSourceClass, resourceapi.AllocationConfigSourceClaim} {
		for _, c := range configs {
			if c.Source != source || c.Opaque == nil || c.Opaque.Driver != driverName || !appliesTo(c.Requests, request) {
				continue
			}
			s, err := parseConfig(c.Opaque.Parameters.Raw)
			if err != nil {
				return sharing{}, err
			}
			out = s
		}
	}
	return out, nil
}

func appliesTo(requests []string, request string) bool {
	if len(requests) == 0 {
		return true
	}
	for _, r := range requests {
		// A config for request "gpu" also covers its subrequests ("gpu/small").
		if r == request || len(request) > len(r) && request[:len(r)+1] == r+"/" {
			return true
		}
	}
	return false
}

func parseConfig(raw []byte) (sharing, error) {
	var c gpuConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return sharing{}, fmt.Errorf("opaque config: %w", err)
	}
	if c.APIVersion != configAPIVersion || c.Kind != configKind {
		return sharing{}, fmt.Errorf("opaque config: want %s %s, got %s %s", configAPIVersion, configKind, c.APIVersion, c.Kind)
	}
	if c.Sharing == nil {
		return defaultSharing, nil
	}
	switch c.Sharing.Strategy {
	case "TimeSlicing":
		s := defaultSharing
		if c.Sharing.TimeSlicingConfig != nil && c.Sharing.TimeSlicingConfig.Interval != "" {
			s.interval = c.Sharing.TimeSlicingConfig.Interval
		}
		switch s.interval {
		case "Default", "Short", "Medium", "Long":
		default:
			return sharing{}, fmt.Errorf("opaque config: unknown time-slice interval %q", s.interval)
		}
		return s, nil
	case "SpacePartitioning":
		s := sharing{strategy: "SpacePartitioning", partitionCount: 1}
		if c.Sharing.SpacePartitioningConfig != nil {
			s.partitionCount = c.Sharing.SpacePartitioningConfig.PartitionCount
		}
		if s.partitionCount < 1 {
			return sharing{}, fmt.Errorf("opaque config: partitionCount must be at least 1")
		}
		return s, nil
	default:
		return sharing{}, fmt.Errorf("opaque config: unknown sharing strategy %q", c.Sharing.Strategy)
	}
}
