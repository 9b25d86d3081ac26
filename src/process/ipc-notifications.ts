import type { NotificationHandlers, NotificationSource } from "../worker/notifications.ts";
import { isParentMessage } from "./messages.ts";

/**
 * Wake-ups for a child of `pgbus start`, fed by the supervisor over IPC: the children of a
 * host share the supervisor's one LISTEN connection instead of holding one each. The
 * worker's backstop poll still runs, so a child keeps working if that LISTEN drops; a
 * re-LISTEN after a reconnect ("listening") wakes every child once.
 */
export function ipcNotifications(channel: string): (handlers: NotificationHandlers) => NotificationSource {
  return (handlers) => {
    const onMessage = (message: unknown): void => {
      if (!isParentMessage(message)) return;
      if (message.type === "notify" && message.channel === channel) handlers.onNotification(message.payload);
      else if (message.type === "listening") handlers.onConnected();
    };
    return {
      async start() {
        process.on("message", onMessage);
        handlers.onConnected(); // look once now: anything sent before this child listened
      },
      async stop() {
        process.off("message", onMessage);
      },
    };
  };
}
