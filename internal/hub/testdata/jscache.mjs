// Reads and writes a Hugging Face cache with the official JS client, so the
// Go tests can check that adapterd's cache is one that client accepts, and
// that adapterd reads the one it writes.
//
// usage: node jscache.mjs scan CACHEDIR
//          prints scanCacheDir's view of the cache
//        node jscache.mjs download ENDPOINT CACHEDIR REPO REVISION FILE...
//          downloadFileToCacheDir for each FILE; prints the paths returned
// Prints one JSON line; an error prints {"error": ...} and exits 3.
import { scanCacheDir, downloadFileToCacheDir } from "@huggingface/hub";

const [mode, ...args] = process.argv.slice(2);
try {
  if (mode === "scan") {
    const info = await scanCacheDir(args[0]);
    console.log(JSON.stringify({
      size: info.size,
      warnings: info.warnings.map((w) => String(w.message || w)),
      repos: info.repos.map((r) => ({
        id: r.id, size: r.size, filesCount: r.filesCount,
        revisions: r.revisions.map((v) => ({
          commitOid: v.commitOid, refs: v.refs, size: v.size,
          files: v.files.map((f) => ({ path: f.path, blobPath: f.blob.path, size: f.blob.size })),
        })),
      })),
    }));
  } else if (mode === "download") {
    const [hubUrl, cacheDir, repo, revision, ...files] = args;
    const paths = [];
    for (const path of files) {
      paths.push(await downloadFileToCacheDir({ repo: { type: "model", name: repo }, revision, path, hubUrl, cacheDir, accessToken: process.env.HF_TOKEN || undefined }));
    }
    console.log(JSON.stringify({ paths }));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} catch (err) {
  console.log(JSON.stringify({ error: String(err.message || err), status: err.statusCode ?? null }));
  process.exit(3);
}
