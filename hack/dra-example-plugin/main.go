// Command dra-example-plugin is the kubelet side of the DRA example driver (gpu.example.com),
// small enough to read in one sitting: it publishes eight simulated GPUs as the node's
// ResourceSlice and, when the kubelet prepares a claim, writes a CDI spec whose container edits
// are environment variables describing the allocated devices and their sharing configuration.
// The local test cluster (hack/node.py) runs it next to a real kubelet.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
)

func main() {
	klog.InitFlags(nil)
	var cfg config
	flag.StringVar(&cfg.nodeName, "node-name", "", "name of the Node object (also the pool name)")
	flag.StringVar(&cfg.kubeconfig, "kubeconfig", "", "kubeconfig to publish slices and read claims with")
	flag.StringVar(&cfg.registrarDir, "registrar-dir", kubeletplugin.KubeletRegistryDir, "the kubelet's plugin registration directory")
	flag.StringVar(&cfg.pluginDir, "plugin-dir", "", "directory for the DRA socket (default: <kubelet plugins dir>/gpu.example.com)")
	flag.StringVar(&cfg.cdiDir, "cdi-dir", "/var/run/cdi", "directory the container runtime reads CDI specs from")
	flag.IntVar(&cfg.numDevices, "num-devices", 8, "number of simulated GPUs")
	flag.Parse()
	if err := run(cfg); err != nil {
		klog.ErrorS(err, "dra-example-plugin failed")
		os.Exit(1)
	}
}

type config struct {
	nodeName, kubeconfig, registrarDir, pluginDir, cdiDir string
	numDevices                                            int
}

func run(cfg config) error {
	if cfg.nodeName == "" {
		return errors.New("--node-name is required")
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.cdiDir, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	drv := &driver{cdi: cdiWriter{dir: cfg.cdiDir}, cancel: cancel}

	opts := []kubeletplugin.Option{
		kubeletplugin.DriverName(driverName),
		kubeletplugin.NodeName(cfg.nodeName),
		kubeletplugin.KubeClient(client),
		kubeletplugin.RegistrarDirectoryPath(cfg.registrarDir),
	}
	opts = append(opts, healthOptions()...)
	if cfg.pluginDir != "" {
		if err := os.MkdirAll(cfg.pluginDir, 0o750); err != nil {
			return err
		}
		opts = append(opts, kubeletplugin.PluginDataDirectoryPath(cfg.pluginDir))
	}
	helper, err := kubeletplugin.Start(ctx, drv, opts...)
	if err != nil {
		return fmt.Errorf("start kubelet plugin: %w", err)
	}
	defer helper.Stop()

	// One pool named after the node, one slice: what the upstream example driver publishes.
	resources := resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{
		cfg.nodeName: {Slices: []resourceslice.Slice{{Devices: devices(cfg.nodeName, cfg.numDevices)}}},
	}}
	if err := helper.PublishResources(ctx, resources); err != nil {
		return fmt.Errorf("publish ResourceSlice: %w", err)
	}
	klog.InfoS("serving", "driver", driverName, "node", cfg.nodeName, "devices", cfg.numDevices)
	<-ctx.Done()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// HandleError logs background errors; one that retrying cannot fix ends the process so the
// supervisor (and the test reading our log) sees it instead of a silently stale slice.
func (d *driver) HandleError(ctx context.Context, err error, msg string) {
	runtime.HandleErrorWithContext(ctx, err, msg)
	if !errors.Is(err, kubeletplugin.ErrRecoverable) {
		d.cancel(fmt.Errorf("fatal: %s: %w", msg, err))
	}
}
