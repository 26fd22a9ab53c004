import { describe, expect, it } from 'vitest';
import { parseShortstat } from '../../agent-runner/workspace.js';

describe('git --shortstat parsing', () => {
  it('reads files, insertions and deletions in every form git prints', () => {
    expect(
      parseShortstat(' 3 files changed, 10 insertions(+), 2 deletions(-)\n'),
    ).toEqual({ filesChanged: 3, insertions: 10, deletions: 2 });
    expect(parseShortstat(' 1 file changed, 1 insertion(+)')).toEqual({
      filesChanged: 1,
      insertions: 1,
      deletions: 0,
    });
    expect(parseShortstat(' 1 file changed, 1 deletion(-)')).toEqual({
      filesChanged: 1,
      insertions: 0,
      deletions: 1,
    });
    // A mode change or an empty file: no insertion/deletion part.
    expect(parseShortstat(' 2 files changed')).toEqual({
      filesChanged: 2,
      insertions: 0,
      deletions: 0,
    });
    expect(parseShortstat('')).toEqual({
      filesChanged: 0,
      insertions: 0,
      deletions: 0,
    });
  });
});
