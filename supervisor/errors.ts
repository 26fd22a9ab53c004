/** The one error type and its codes live in contract/ (shared with the runner and the dashboard). */
export {
  ERROR_CODES,
  SupervisorError,
  coerceError,
  redactSecrets,
  type ErrorCode,
} from '../contract/errors.js';
