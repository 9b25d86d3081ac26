/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), for tests:
 * every line must be a HELP, a TYPE or a sample of a family declared by a TYPE line before
 * it; names, label names and escapes must be valid; a family appears in one block;
 * histograms have cumulative buckets ending at le="+Inf" equal to their _count.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function fail(line: number, why: string, text: string): never {
  throw new Error(`line ${line}: ${why}: ${JSON.stringify(text)}`);
}

function parseValue(text: string, line: number, raw: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) fail(line, "bad value", raw);
  return Number(text);
}

/** Parses `{a="x",b="y\"z"}` starting at `at`; returns the labels and the index after `}`. */
function parseLabels(text: string, at: number, line: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = at + 1;
  while (text[i] !== "}") {
    const eq = text.indexOf("=", i);
    if (eq === -1) fail(line, "label without =", text);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) fail(line, `bad label name ${name}`, text);
    if (name in labels) fail(line, `duplicate label ${name}`, text);
    if (text[eq + 1] !== '"') fail(line, "label value not quoted", text);
    let value = "";
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const next = text[++j];
        if (next === "n") value += "\n";
        else if (next === "\\" || next === '"') value += next;
        else fail(line, "bad escape in label value", text);
      } else value += text[j];
    }
    if (j >= text.length) fail(line, "unterminated label value", text);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") fail(line, "expected , or } after a label", text);
  }
  return { labels, end: i + 1 };
}

function familyOf(sampleName: string, families: Map<string, Family>): Family | undefined {
  if (families.has(sampleName)) return families.get(sampleName);
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    const base = sampleName.endsWith(suffix) ? families.get(sampleName.slice(0, -suffix.length)) : undefined;
    if (base && (base.type === "histogram" || (base.type === "summary" && suffix !== "_bucket"))) return base;
  }
  return undefined;
}

function checkHistogram(family: Family): void {
  const series = new Map<string, Sample[]>();
  const key = (labels: Record<string, string>): string =>
    JSON.stringify(
      Object.entries(labels)
        .filter(([name]) => name !== "le")
        .sort(),
    );
  for (const sample of family.samples.filter((s) => s.name === `${family.name}_bucket`)) {
    if (!("le" in sample.labels)) throw new Error(`${family.name}: a bucket without le`);
    series.set(key(sample.labels), [...(series.get(key(sample.labels)) ?? []), sample]);
  }
  for (const [labels, buckets] of series) {
    let last = -Infinity;
    let lastCount = 0;
    for (const bucket of buckets) {
      const le = parseValue(bucket.labels["le"]!, 0, bucket.labels["le"]!);
      if (le <= last) throw new Error(`${family.name}${labels}: buckets not in increasing le order`);
      if (bucket.value < lastCount) throw new Error(`${family.name}${labels}: buckets not cumulative`);
      last = le;
      lastCount = bucket.value;
    }
    if (last !== Infinity) throw new Error(`${family.name}${labels}: no le="+Inf" bucket`);
    const count = family.samples.find((s) => s.name === `${family.name}_count` && key(s.labels) === labels);
    if (count?.value !== lastCount) throw new Error(`${family.name}${labels}: +Inf bucket ${lastCount} != _count ${count?.value}`);
  }
}

export function parsePrometheusText(text: string): Map<string, Family> {
  if (!text.endsWith("\n")) throw new Error("the exposition must end with a newline");
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  let current: Family | undefined;
  text
    .slice(0, -1)
    .split("\n")
    .forEach((raw, index) => {
      const line = index + 1;
      if (raw === "") return;
      if (raw.startsWith("#")) {
        const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
        if (!match) return; // a plain comment
        const [, kind, name, rest] = match as unknown as [string, string, string, string];
        if (!NAME.test(name)) fail(line, "bad metric name", raw);
        if (current && current.name !== name) closed.add(current.name);
        if (closed.has(name)) fail(line, `family ${name} appears in two blocks`, raw);
        const family = families.get(name) ?? { name, type: "untyped" as const, help: "", samples: [] };
        if (kind === "TYPE") {
          if (!TYPES.has(rest)) fail(line, "bad type", raw);
          if (family.samples.length > 0) fail(line, "TYPE after samples", raw);
          family.type = rest as Family["type"];
        } else family.help = rest;
        families.set(name, family);
        current = family;
        return;
      }
      const nameEnd = raw.search(/[{ ]/);
      if (nameEnd <= 0) fail(line, "not a sample", raw);
      const name = raw.slice(0, nameEnd);
      if (!NAME.test(name)) fail(line, "bad sample name", raw);
      const { labels, end } = raw[nameEnd] === "{" ? parseLabels(raw, nameEnd, line) : { labels: {}, end: nameEnd };
      const parts = raw.slice(end).trim().split(" ");
      if (raw[end] !== " " || parts.length < 1 || parts.length > 2) fail(line, "expected a value (and an optional timestamp)", raw);
      const family = familyOf(name, families);
      if (!family || family !== current) fail(line, `sample of an undeclared family (or outside its block)`, raw);
      family.samples.push({ name, labels, value: parseValue(parts[0]!, line, raw) });
    });
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return families;
}

/** The value of the one sample of `name` with exactly these labels (ignoring others); undefined if none. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string>): number | undefined {
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value)) return sample.value;
    }
  }
  return undefined;
}
