// Command nullwebhook allows every AdmissionReview unchanged, as fast as Go's standard library
// can: registered in place of kubectl-dra, it shows what calling any mutating webhook costs the
// API server, the floor under bench/api_overhead.py's ratios.
//
//	nullwebhook ADDRESS CERT_FILE KEY_FILE
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
)

type review struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Request    *request       `json:"request,omitempty"`
	Response   map[string]any `json:"response,omitempty"`
}

type request struct {
	UID string `json:"uid"`
}

func mutate(w http.ResponseWriter, r *http.Request) {
	var in review
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&in); err != nil || in.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	out := review{APIVersion: in.APIVersion, Kind: in.Kind, Response: map[string]any{"uid": in.Request.UID, "allowed": true}}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: nullwebhook ADDRESS CERT_FILE KEY_FILE")
	}
	http.HandleFunc("/mutate", mutate)
	http.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	log.Fatal(http.ListenAndServeTLS(os.Args[1], os.Args[2], os.Args[3], nil))
}
