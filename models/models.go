// Package models ships rampart's default trained models as versioned
// files embedded in the binary, loaded at start.
//
// ddos-lucid.json is the LUCID-style CNN that classifies ddosfeat
// sessions (internal/detect/lucid). It is trained on traffic recorded in
// the lab and re-made by the script in bench/ddosdata:
//
//	sudo go run ./bench/ddosdata -out /tmp/ddosdata -train
//
// which records the train and test variants of internal/traffic's
// scenarios, trains with `rampart model train ddos` (fixed seed), writes
// this file and evaluates it on the test variant's recordings with
// `rampart model eval ddos --store` (its training record keeps both the
// held-out validation and those test metrics: `rampart model show`).
package models

import (
	"bytes"
	_ "embed"

	"github.com/rampart-shield/rampart/internal/detect/lucid"
)

//go:embed ddos-lucid.json
var ddosLucid []byte

// DDoSFile is the name of the default DDoS model's file in this folder.
const DDoSFile = "ddos-lucid.json"

// DDoS loads the default DDoS model (a fresh copy each call).
func DDoS() (*lucid.Model, error) {
	return lucid.Load(bytes.NewReader(ddosLucid))
}

// DDoSBytes returns the default DDoS model's file. The slice is shared:
// do not modify it.
func DDoSBytes() []byte { return ddosLucid }
