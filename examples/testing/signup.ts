/**
 * A small piece of application code to test: signing a user up enqueues a welcome email
 * and publishes `users.signed_up`. In an application the import would be `from "pgbus"`.
 */
import { type Pgbus, defineJob, defineSubscriber } from "../../src/index.ts";

export const sentEmails: string[] = [];

export const sendWelcomeEmail = defineJob<{ userId: number; email: string }>({
  name: "send_welcome_email",
  queue: "mailers",
  maxRetries: 2,
  backoff: { baseMs: 60_000, maxMs: 60_000, jitter: 0 },
  // A Standard Schema (zod, valibot, ...) would go in `schema`; a hand-written one here.
  schema: {
    "~standard": {
      validate: (value) => {
        const payload = value as { userId?: unknown; email?: unknown };
        return typeof payload?.email === "string" && payload.email.includes("@")
          ? { value: value as { userId: number; email: string } }
          : { issues: [{ message: "email must be an address", path: ["email"] }] };
      },
    },
  },
  async perform({ email }, ctx) {
    if (email.endsWith("@bounce.example")) throw new Error(`mailbox ${email} does not exist`);
    ctx.logger.info({ email }, "welcome email sent");
    sentEmails.push(email);
  },
});

export const auditLog: string[] = [];

export const auditSignups = defineSubscriber<{ userId: number }>({
  name: "audit_signups",
  pattern: "users.*",
  handle(event) {
    auditLog.push(`${event.routingKey}:${event.payload.userId}`);
  },
});

export async function signUp(bus: Pgbus, user: { id: number; email: string }, options: { trialEmailInMs?: number } = {}): Promise<void> {
  await bus.enqueue(sendWelcomeEmail, { userId: user.id, email: user.email }, { delayMs: options.trialEmailInMs });
  await bus.publish("users.signed_up", { userId: user.id });
}
