/** How numbers and times read on the dashboard's pages. */

const UNITS: Array<[number, string]> = [
  [86_400, "d"],
  [3_600, "h"],
  [60, "m"],
];

/** An age at a glance, in its largest unit: "42s", "7m", "3h", "2d". */
export function age(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const whole = Math.max(0, Math.floor(seconds));
  const unit = UNITS.find(([size]) => whole >= size);
  return unit ? `${Math.floor(whole / unit[0])}${unit[1]}` : `${whole}s`;
}

export function count(value: number | null | undefined, estimated = false): string {
  if (value === null || value === undefined) return "–";
  return `${estimated ? "~" : ""}${value.toLocaleString("en-US")}`;
}

export function time(value: Date | string | null | undefined): string {
  if (value === null || value === undefined) return "–";
  const date = typeof value === "string" ? new Date(value) : value;
  return Number.isNaN(date.getTime())
    ? String(value)
    : date
        .toISOString()
        .replace("T", " ")
        .replace(/\.\d+Z$/, "Z");
}
