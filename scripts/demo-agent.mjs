#!/usr/bin/env node
// The demo's stand-in for a coding agent: it reads the issue the supervisor hands it
// (environment + prompt file), "works" for a moment, and writes a small change.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const {
  ISSUE_ID,
  ISSUE_TITLE,
  ISSUE_BODY_FILE,
  ISSUE_PROMPT_FILE,
  AGENT_ID,
  AGENT_BRANCH,
  LAND_REASON,
  LAND_CONFLICT_FILES,
} = process.env;
const prompt = readFileSync(ISSUE_PROMPT_FILE, 'utf8');
console.log(
  `${AGENT_ID} on ${AGENT_BRANCH}: reading issue #${ISSUE_ID} (${prompt.length} bytes of prompt)`,
);
if (LAND_REASON)
  console.log(
    `${AGENT_ID}: landing sent this back (${LAND_REASON}${LAND_CONFLICT_FILES ? ` in ${LAND_CONFLICT_FILES.split('\n').join(', ')}` : ''}); redoing it on the current main`,
  );
const steps = 3 + (Number(ISSUE_ID) % 3);
for (let i = 1; i <= steps; i++) {
  await new Promise((r) => setTimeout(r, 300));
  console.log(`${AGENT_ID}: step ${i}/${steps}`);
}
const slug = ISSUE_TITLE.toLowerCase()
  .replace(/[^a-z0-9]+/g, '-')
  .replace(/^-|-$/g, '');
// "route: /x" in the body: add the route to app.js's list (the line two such issues both edit).
const route = /^route:\s*(\S+)$/m.exec(readFileSync(ISSUE_BODY_FILE, 'utf8'));
if (route) {
  const app = readFileSync('app.js', 'utf8').replace(
    /^const routes = \[(.*)\];$/m,
    (_, list) => `const routes = [${list}, '${route[1]}'];`,
  );
  writeFileSync('app.js', app);
  console.log(`${AGENT_ID}: added ${route[1]} to app.js`);
}
mkdirSync('changes', { recursive: true });
writeFileSync(
  `changes/${ISSUE_ID}-${slug}.md`,
  `# ${ISSUE_TITLE}\n\nResolved by ${AGENT_ID}.\n`,
);
console.log(`${AGENT_ID}: wrote changes/${ISSUE_ID}-${slug}.md`);
