package hub

import (
	"context"
	"os"
)

// Reuse is offered each file Fetch is about to download, with what the hub
// says of it (size and ETag, the sha256 or git blob sha1 of its bytes) and
// the folder Fetch writes into. It puts a copy it already holds there under
// name and reports true, or reports false and the file is taken from the cache or
// downloaded. It must put there only bytes it knows to hash to info.ETag
// (a copy it verified when it was fetched, of the same size).
type Reuse func(name string, info FileInfo) bool

// FetchReusing is Fetch with reuse asked first for every file, so that a
// mirror re-fetching a repo at a new commit copies the files whose hash did
// not change from its own folder instead of downloading them again.
func (c *Client) FetchReusing(ctx context.Context, r Request, dir *os.File, reuse Reuse) (*Source, error) {
	return c.fetch(ctx, r, dir, reuse)
}
