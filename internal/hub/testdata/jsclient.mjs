// Downloads files from a Hub endpoint with the official JS client, so the
// Go tests can check that the fake hub speaks the protocol real clients do.
//
// usage: node jsclient.mjs ENDPOINT REPO REVISION OUTDIR [FILE...]
// env:   HF_TOKEN (optional)
// Prints one JSON line: the tree listing and, per file, its download info.
// A hub error prints {"error": ..., "status": ...} and exits 3.
import { listFiles, downloadFile, fileDownloadInfo } from "@huggingface/hub";
import { writeFile } from "node:fs/promises";
import { join, basename } from "node:path";

const [endpoint, repo, revision, outDir, ...files] = process.argv.slice(2);
const accessToken = process.env.HF_TOKEN || undefined;
const common = { repo: { type: "model", name: repo }, revision, hubUrl: endpoint, accessToken };

try {
  const tree = [];
  for await (const e of listFiles({ ...common, recursive: true })) {
    tree.push({ type: e.type, path: e.path, size: e.size, oid: e.oid, lfs: e.lfs ? { oid: e.lfs.oid, size: e.lfs.size } : null });
  }
  const got = [];
  for (const path of files) {
    const info = await fileDownloadInfo({ ...common, path });
    const blob = await downloadFile({ ...common, path, xet: false });
    if (!blob) throw Object.assign(new Error(`${path}: not found`), { statusCode: 404 });
    const buf = Buffer.from(await blob.arrayBuffer());
    await writeFile(join(outDir, basename(path)), buf);
    got.push({ path, etag: info.etag, size: info.size, bytes: buf.length });
  }
  console.log(JSON.stringify({ tree, files: got }));
} catch (err) {
  console.log(JSON.stringify({ error: String(err.message || err), status: err.statusCode ?? null }));
  process.exit(3);
}
