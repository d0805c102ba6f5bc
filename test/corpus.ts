// Test helper: a small JSONL corpus with structure a model can learn (and a unigram entropy it
// must beat), the same text for every test that trains on it.
import { writeFileSync } from 'node:fs';
import path from 'node:path';

/** Writes 40 documents of 25 subject–verb–object sentences to DIR/corpus.jsonl; returns the path. */
export function writeCorpus(dir: string): string {
  const subj = ['the people', 'our nation', 'the congress', 'every citizen', 'the government'];
  const verb = ['must protect', 'will build', 'shall defend', 'can improve', 'should honor'];
  const obj = ['the union', 'our schools', 'the economy', 'the laws', 'our freedom'];
  let s = 7;
  const r = (n: number): number => { s = (s * 1103515245 + 12345) % 2147483648; return s % n; };
  const lines: string[] = [];
  for (let d = 0; d < 40; d++) {
    let doc = '';
    for (let k = 0; k < 25; k++) doc += `${subj[r(5)]} ${verb[r(5)]} ${obj[r(5)]}. `;
    lines.push(JSON.stringify({ text: doc }));
  }
  const f = path.join(dir, 'corpus.jsonl');
  writeFileSync(f, lines.join('\n') + '\n');
  return f;
}
