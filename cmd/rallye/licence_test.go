package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The project is meant to be self-hosted by others: it carries a licence at
// its root, compatible with what it vendors, and a NOTICE naming each
// vendored part with its own licence file.
func TestLicenceAndNoticeOfVendoredCode(t *testing.T) {
	root := filepath.Join("..", "..")
	licence, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	if err != nil {
		t.Fatalf("the repository has no LICENSE at its root: %v", err)
	}
	if !strings.Contains(string(licence), "Apache License") || !strings.Contains(string(licence), "Version 2.0, January 2004") {
		t.Fatalf("LICENSE is not the Apache License 2.0, the licence of the vendored protovalidate")
	}
	notice, err := os.ReadFile(filepath.Join(root, "NOTICE"))
	if err != nil {
		t.Fatalf("the repository has no NOTICE: %v", err)
	}
	vendored, err := os.ReadDir(filepath.Join(root, "third_party"))
	if err != nil {
		t.Fatal(err)
	}
	if len(vendored) == 0 {
		t.Fatal("third_party is empty: this test has nothing to check")
	}
	for _, dir := range vendored {
		path := "third_party/" + dir.Name()
		if !strings.Contains(string(notice), path) {
			t.Errorf("NOTICE does not list the vendored %s", path)
		}
		if _, err := os.Stat(filepath.Join(root, path, "LICENSE")); err != nil {
			t.Errorf("vendored %s has no LICENSE of its own: %v", path, err)
		}
	}
}
