// Unit tests of the portal helpers that need no DOM: label parsing and policy problem positions.

import assert from "node:assert/strict";
import { test } from "node:test";

import { formatProblem, offsetOfPosition } from "../portal-policy.js";
import { formatLabels, parseLabels } from "../portal-resources.js";

test("parseLabels reads key=value pairs", () => {
  assert.deepEqual(parseLabels("env=prod, team = build ,tier=0"), { env: "prod", team: "build", tier: "0" });
});

test("parseLabels accepts empty input", () => {
  assert.deepEqual(parseLabels(""), {});
  assert.deepEqual(parseLabels(" , ,"), {});
});

test("parseLabels keeps = in values", () => {
  assert.deepEqual(parseLabels("query=a=b"), { query: "a=b" });
});

test("parseLabels allows an empty value", () => {
  assert.deepEqual(parseLabels("flag="), { flag: "" });
});

test("parseLabels rejects an entry without =", () => {
  assert.throws(() => parseLabels("env=prod, novalue"), {
    message: 'Invalid label "novalue": write labels as key=value, separated by commas.',
  });
});

test("parseLabels rejects an empty key", () => {
  assert.throws(() => parseLabels("=prod"), { message: /^Invalid label "=prod"/ });
});

test("parseLabels rejects a repeated key", () => {
  assert.throws(() => parseLabels("env=prod, env=test"), { message: 'Label "env" is given twice.' });
});

test("formatLabels round-trips through parseLabels", () => {
  const labels = { env: "prod", team: "build" };
  assert.equal(formatLabels(labels), "env=prod, team=build");
  assert.deepEqual(parseLabels(formatLabels(labels)), labels);
  assert.equal(formatLabels(undefined), "");
});

test("offsetOfPosition finds line and column", () => {
  const text = "first\n  second\nthird";
  assert.equal(offsetOfPosition(text, 1, 1), 0);
  assert.equal(offsetOfPosition(text, 2, 3), "first\n  ".length);
  assert.equal(offsetOfPosition(text, 3, 1), "first\n  second\n".length);
});

test("offsetOfPosition clamps to the text", () => {
  const text = "ab\ncd";
  assert.equal(offsetOfPosition(text, 1, 99), 2, "column past the line end");
  assert.equal(offsetOfPosition(text, 9, 1), 3, "line past the end");
  assert.equal(offsetOfPosition(text, 0, 0), 0, "line and column below 1");
});

test("formatProblem names line and column", () => {
  assert.equal(formatProblem({ line: 4, column: 7, message: "unknown role" }), "line 4, column 7: unknown role");
});
