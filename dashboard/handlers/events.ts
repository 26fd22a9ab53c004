import { existsSync, statSync } from 'node:fs';
import type { DashboardDeps } from '../deps.js';
import type { DashRequest, DashResponse, SseSink } from '../http.js';
import {
  decodePosition,
  encodePosition,
  followSlot,
  slotHistory,
  type SlotPosition,
} from '../../supervisor/logs/slot-log.js';
import { cleanLine } from '../../supervisor/logs/tail.js';
import { renderReview } from '../page/review.js';
import { renderSections } from '../page/sections.js';
import type { Snapshot } from '../snapshot.js';
import { intParam } from './api.js';

const RETRY_MS = 2000;
const STALE_MS = 2000;

/**
 * One serialisation per pushed snapshot, however many pages listen. A heartbeat push is the last
 * snapshot with a fresh `at` (a shallow copy sharing its parts): its sections are not rendered again.
 */
const payloads = new WeakMap<Snapshot, string>();
const sections = new WeakMap<object, Record<string, string>>();
function payloadOf(s: Snapshot): string {
  let p = payloads.get(s);
  if (!p) {
    let html = sections.get(s.agents);
    if (!html) {
      html = {
        ...renderSections(s),
        review: renderReview(s.review, s.readOnly),
      };
      sections.set(s.agents, html);
    }
    p = JSON.stringify({ status: s, html });
    payloads.set(s, p);
  }
  return p;
}

/**
 * GET /api/events — the page's live feed: an `status` event with the snapshot and the rendered
 * sections on every change and at least every second. A reconnecting client (EventSource sends
 * Last-Event-ID) gets the current snapshot at once: each event carries the whole state.
 */
export const statusEvents = (d: DashboardDeps) => (): DashResponse => ({
  status: 200,
  stream: {
    retryMs: RETRY_MS,
    open: (sink: SseSink) => {
      const send = (s: Snapshot, seq: number) =>
        sink.send({ event: 'status', id: String(seq), data: payloadOf(s) });
      // The last push, if recent; a stale one (nobody listened for a while) waits for the fresh build.
      const latest = d.hub.latest();
      if (latest && Date.now() - latest.snapshot.at < STALE_MS)
        send(latest.snapshot, latest.seq);
      return d.hub.subscribe(send);
    },
  },
});

/**
 * GET /api/agents/:id/logs/stream?lines=N — a live tail of a slot's log (the runner's log with the
 * running attempt's output spliced in): the last N lines first, then new lines as they are
 * written, in `lines` events (a JSON array) whose id is the position after them (byte offsets in
 * the runner's and the attempt's log), so a reconnect (Last-Event-ID) resumes exactly there.
 */
export const logEvents =
  (d: DashboardDeps) =>
  (req: DashRequest): DashResponse => {
    const file = d.source.logFile(req.params.id ?? '');
    const n = intParam(req.query.lines, 200, 5000);
    const lastId = req.headers['last-event-id'];
    const resumeFrom =
      lastId === undefined ? undefined : decodePosition(lastId);
    return {
      status: 200,
      stream: {
        retryMs: RETRY_MS,
        open: (sink: SseSink) => {
          let from: SlotPosition;
          if (
            resumeFrom !== undefined &&
            existsSync(file) &&
            statSync(file).size >= resumeFrom.runner
          ) {
            from = resumeFrom;
          } else {
            if (lastId !== undefined) sink.send({ event: 'reset', data: '{}' });
            const tail = slotHistory(file, n);
            from = tail.position;
            if (!existsSync(file))
              sink.send({
                event: 'nolog',
                data: JSON.stringify({
                  message: `${req.params.id} has no log yet; waiting for it`,
                }),
              });
            sink.send({
              event: 'lines',
              id: encodePosition(from),
              data: JSON.stringify(tail.lines.map(cleanLine)),
            });
          }
          return followSlot(file, from, (lines, next) =>
            sink.send({
              event: 'lines',
              id: encodePosition(next),
              data: JSON.stringify(lines.map(cleanLine)),
            }),
          );
        },
      },
    };
  };
