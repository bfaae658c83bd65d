package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

const (
	cdiVendor = "k8s." + driverName
	cdiClass  = "gpu"
	cdiKind   = cdiVendor + "/" + cdiClass
)

type preparedDevice struct {
	name   string // gpu-<n>
	config sharing
}

// cdiWriter owns one spec file per prepared claim in the runtime's CDI directory.
type cdiWriter struct{ dir string }

// Device names carry the claim UID, so a runtime's cached spec of an earlier claim can never
// answer for a new one.
func cdiID(claim types.UID, device string) string {
	return fmt.Sprintf("%s=%s-%s", cdiKind, claim, device)
}

func (w cdiWriter) path(claim types.UID) string {
	return filepath.Join(w.dir, fmt.Sprintf("%s-%s.json", cdiVendor, claim))
}

type cdiSpec struct {
	Version string      `json:"cdiVersion"`
	Kind    string      `json:"kind"`
	Devices []cdiDevice `json:"devices"`
}

type cdiDevice struct {
	Name  string   `json:"name"`
	Edits cdiEdits `json:"containerEdits"`
}

type cdiEdits struct {
	Env []string `json:"env"`
}

// env is what one device shows a container: GPU_DEVICE_<n> and its claim and sharing settings.
func env(claim types.UID, d preparedDevice) []string {
	prefix := "GPU_DEVICE_" + strings.TrimPrefix(d.name, "gpu-")
	out := []string{
		fmt.Sprintf("%s=%s", prefix, d.name),
		fmt.Sprintf("%s_RESOURCE_CLAIM=%s", prefix, claim),
		fmt.Sprintf("%s_SHARING_STRATEGY=%s", prefix, d.config.strategy),
	}
	if d.config.strategy == "SpacePartitioning" {
		return append(out, fmt.Sprintf("%s_PARTITION_COUNT=%s", prefix, strconv.Itoa(d.config.partitionCount)))
	}
	return append(out, fmt.Sprintf("%s_TIMESLICE_INTERVAL=%s", prefix, d.config.interval))
}

func (w cdiWriter) write(claim types.UID, devices []preparedDevice) error {
	spec := cdiSpec{Version: "0.6.0", Kind: cdiKind}
	for _, d := range devices {
		spec.Devices = append(spec.Devices, cdiDevice{
			Name:  fmt.Sprintf("%s-%s", claim, d.name),
			Edits: cdiEdits{Env: env(claim, d)},
		})
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	// Write and rename: the runtime watches the directory and must never read half a spec.
	tmp, err := os.CreateTemp(w.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("CDI spec: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("CDI spec: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("CDI spec: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("CDI spec: %w", err)
	}
	if err := os.Rename(tmp.Name(), w.path(claim)); err != nil {
		return fmt.Errorf("CDI spec: %w", err)
	}
	return nil
}

func (w cdiWriter) remove(claim types.UID) error {
	if err := os.Remove(w.path(claim)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove CDI spec: %w", err)
	}
	return nil
}
