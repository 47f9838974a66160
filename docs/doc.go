// Package docs holds adapterd's user documentation (the Markdown files next
// to this one) and no code. Its tests keep the documentation true: they read
// the names users type and see (config and sidecar keys, commands, flags,
// states, status fields, metrics) from the code itself, and fail when a
// page does not list one. They also check that every link stays inside the
// repository and that every YAML example parses, because the pages are all
// a user has: nothing outside the repository is shipped with them.
package docs
