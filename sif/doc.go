// Package sif reads, inspects, validates and verifies SIF container images.
package sif
