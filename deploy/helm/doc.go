// Package helm holds adapterd's Helm chart (adapterd/) and its test, which
// renders the chart with Helm's own engine for every values file in
// adapterd/ci and decodes each manifest strictly into the Kubernetes API
// types, so a misspelt field fails here rather than in a cluster.
package helm
