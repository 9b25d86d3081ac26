/** Why the embedded PostgreSQL could not start (or stop) as asked; the message says what to do. */
export class EmbeddedPostgresError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EmbeddedPostgresError";
  }
}
