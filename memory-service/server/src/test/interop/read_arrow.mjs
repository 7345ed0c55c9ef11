// Reads a longmem Arrow layer file with the JavaScript Arrow implementation (apache-arrow on npm):
// prints rows, then for each of the first rows: document, position and the first two key numbers.
// usage: node read_arrow.mjs LAYER_FILE ROWS_TO_PRINT
import { readFileSync } from "node:fs";
import { tableFromIPC } from "apache-arrow";

const table = tableFromIPC(readFileSync(process.argv[2]));
console.log(table.numRows);
const n = Number(process.argv[3]);
const doc = table.getChild("document");
const pos = table.getChild("position");
const key = table.getChild("key");
for (let i = 0; i < n; i++) {
  const k = key.get(i);
  console.log(`${doc.get(i)} ${pos.get(i)} ${k.get(0)} ${k.get(1)}`);
}
