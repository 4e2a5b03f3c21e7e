// Package jumpgate is the root of the jumpgate module: a zero-trust gate for
// engineers' SSH, PostgreSQL and Kubernetes access. The product lives in the
// sub-packages; this file only anchors the module.
package jumpgate
