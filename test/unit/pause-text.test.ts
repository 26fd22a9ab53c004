/**
 * A pause's text names when it ends: the local time when that is within 20 hours, else the local
 * date and time — the date of the same clock (a pause until midnight seen at 01:00 is ~23 h
 * away, so it is shown as tomorrow's date at 00:00).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { describePause } from '../../supervisor/pause.js';

const tz = process.env.TZ;
afterEach(() => {
  if (tz === undefined) delete process.env.TZ;
  else process.env.TZ = tz;
});

describe('a pause described', () => {
  it('gives the local time, and the local date when it ends more than 20 h from now', () => {
    // Ahead of UTC by 14 h: at local 00:30 on the 2nd, UTC is still the 1st.
    process.env.TZ = 'Pacific/Kiritimati';
    const now = new Date(2026, 11, 2, 1, 0).getTime(); // 01:00 local, 2 Dec
    const midnight = new Date(2026, 11, 3, 0, 0).getTime();
    const p = { kind: 'budget' as const, reason: 'x', since: now };
    expect(describePause({ ...p, until: midnight }, now)).toBe(
      'paused: daily budget until 2026-12-03 00:00 (in 23h 0m)',
    );
    expect(describePause({ ...p, until: now + 3 * 3600_000 }, now)).toMatch(
      /^paused: daily budget until 04:00 \(in 3h( 0m)?\)$/,
    );
  });
});
