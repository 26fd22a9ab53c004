/**
 * Reset times as agents and people write them ("2pm (Europe/Berlin)", "5:42 PM",
 * "Jul 5th, 2026 8:19 PM", "in 2 hours 11 minutes", an ISO time, seconds). Shared by the
 * runner (limit messages, the status file) and the CLI (`supervisor pause --until`).
 */

const MONTHS = [
  'jan',
  'feb',
  'mar',
  'apr',
  'may',
  'jun',
  'jul',
  'aug',
  'sep',
  'oct',
  'nov',
  'dec',
];

/** Wall-clock fields of an instant in a time zone (undefined: the process's own). */
function wallClock(at: number, timeZone: string | undefined) {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(at);
  const get = (t: string) =>
    Number(parts.find((p) => p.type === t)?.value ?? '0');
  return {
    year: get('year'),
    month: get('month') - 1,
    day: get('day'),
    hour: get('hour') % 24,
    minute: get('minute'),
    second: get('second'),
  };
}

/** The instant at which the wall clock of `timeZone` shows the given fields. */
function instantOf(
  f: { year: number; month: number; day: number; hour: number; minute: number },
  timeZone: string | undefined,
): number {
  const asUtc = Date.UTC(f.year, f.month, f.day, f.hour, f.minute);
  let t = asUtc;
  // The zone's offset at the instant itself (two rounds settle DST edges).
  for (let i = 0; i < 2; i++) {
    const w = wallClock(t, timeZone);
    const shown = Date.UTC(w.year, w.month, w.day, w.hour, w.minute, w.second);
    t = asUtc - (shown - t);
  }
  return t;
}

function validZone(tz: string | undefined): string | undefined {
  if (!tz) return undefined;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return tz;
  } catch {
    return undefined;
  }
}

function hour24(h: number, ampm: string | undefined): number {
  if (!ampm) return h;
  const pm = ampm.toLowerCase() === 'pm';
  return (h % 12) + (pm ? 12 : 0);
}

/**
 * "2pm", "1:30am", "17:42", "5:42 PM", optionally "(Asia/Dhaka)" and optionally preceded by a
 * date ("Jul 5th, 2026 8:19 PM", "Oct 9 at 10am"): the next such instant after `now`.
 */
export function parseClockTime(
  text: string,
  now = Date.now(),
  defaultZone?: string,
): number | undefined {
  const m =
    /^\s*(?:(?:on\s+)?([A-Za-z]{3})[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s*(\d{4})?,?\s*(?:at\s+)?)?(\d{1,2})(?::(\d{2}))?\s*([ap]\.?m\.?)?\s*(?:\(([^)]+)\))?/i.exec(
      text,
    );
  if (!m?.[4]) return undefined;
  const ampm = m[6]?.replace(/\./g, '');
  // A bare number without minutes or am/pm is not a time ("resets 5" says nothing).
  if (!ampm && m[5] === undefined) return undefined;
  const hour = hour24(Number(m[4]), ampm);
  const minute = Number(m[5] ?? '0');
  if (hour > 23 || minute > 59) return undefined;
  const zone = validZone(m[7]?.trim()) ?? validZone(defaultZone);
  const today = wallClock(now, zone);
  if (m[1]) {
    const month = MONTHS.indexOf(m[1].toLowerCase());
    if (month < 0) return undefined;
    const day = Number(m[2]);
    let year = m[3] ? Number(m[3]) : today.year;
    let t = instantOf({ year, month, day, hour, minute }, zone);
    if (!m[3] && t <= now) {
      year += 1;
      t = instantOf({ year, month, day, hour, minute }, zone);
    }
    return t;
  }
  let t = instantOf({ ...today, hour, minute }, zone);
  if (t <= now) {
    const tomorrow = wallClock(now + 24 * 3600_000, zone);
    t = instantOf({ ...tomorrow, hour, minute }, zone);
  }
  return t;
}

const UNIT_MS: Record<string, number> = {
  s: 1000,
  sec: 1000,
  secs: 1000,
  second: 1000,
  seconds: 1000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3600_000,
  hr: 3600_000,
  hrs: 3600_000,
  hour: 3600_000,
  hours: 3600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
};

/** "5 days 22 hours 11 minutes", "2h 13m", "90 seconds": milliseconds. */
export function parseSpokenDuration(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)\s*([a-z]+)/gi;
  let total = 0;
  let found = false;
  for (const m of text.matchAll(re)) {
    const unit = UNIT_MS[m[2]!.toLowerCase()];
    if (unit === undefined) break;
    total += Number(m[1]) * unit;
    found = true;
  }
  return found ? Math.round(total) : undefined;
}

/**
 * A `retryAfter` of the generic contract, or `--until`: an ISO time, a number of seconds
 * (number or digits), a duration ("15m", "2 hours") or a clock time ("14:00", "2pm").
 */
export function parseRetryAfter(
  v: unknown,
  now = Date.now(),
): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0)
    return now + Math.round(v * 1000);
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  if (/^\d+(?:\.\d+)?$/.test(s)) return now + Math.round(Number(s) * 1000);
  if (/^\d{4}-\d{2}-\d{2}/.test(s)) {
    const t = Date.parse(s);
    return Number.isNaN(t) ? undefined : t;
  }
  const short = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s);
  if (short)
    return (
      now +
      Math.round(
        Number(short[1]) *
          { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[
            short[2] as 'ms' | 's' | 'm' | 'h' | 'd'
          ],
      )
    );
  const spoken =
    /^\d/.test(s) && !/[:]|[ap]m\b/i.test(s)
      ? parseSpokenDuration(s)
      : undefined;
  if (spoken !== undefined) return now + spoken;
  return parseClockTime(s, now);
}

/** "in 2h 13m" style, for people. */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}
