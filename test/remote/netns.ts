/** The second host of the two-host tests: shared with the lost-host benchmark (bench/lib/netns.ts). */
export {
  BoundRedis,
  CODE_UNDER_TMP,
  SecondHost,
  type Link,
} from '../../bench/lib/netns.js';
