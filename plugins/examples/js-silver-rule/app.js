// A Sluice silver rule in JavaScript: parses raw events into silver_events
// (the contract's columns), quarantines malformed ones and, as the rule,
// events of accounts whose id starts with `test_`.
import {
  tableFromIPC, tableToIPC, Table, Schema, Field, Utf8, Uint32, Int64,
  DateDay, TimestampMicrosecond, vectorFromArray, RecordBatch, makeData, Struct,
} from 'apache-arrow';
import { log } from 'sluice:transform/host@0.2.0';

const ts = () => new TimestampMicrosecond('UTC');
const SILVER = new Schema([
  new Field('input_row', new Uint32(), false),
  new Field('event_id', new Utf8(), false),
  new Field('event_type', new Utf8(), false),
  new Field('event_time', ts(), false),
  new Field('event_date', new DateDay(), false),
  new Field('user_id', new Utf8(), false),
  new Field('account_id', new Utf8(), false),
  new Field('plan', new Utf8(), false),
  new Field('session_id', new Utf8(), false),
  ...['feature', 'platform', 'country', 'app_version', 'method'].map(n => new Field(n, new Utf8(), true)),
  new Field('duration_ms', new Int64(), true),
  new Field('items', new Int64(), true),
  ...['from_plan', 'to_plan', 'properties', 'extra'].map(n => new Field(n, new Utf8(), true)),
]);
const QUARANTINE = new Schema([
  new Field('input_row', new Uint32(), false),
  new Field('reason', new Utf8(), false),
  new Field('detail', new Utf8(), false),
]);

const schemaBytes = (schema) => tableToIPC(new Table(schema), 'stream');

export function info() {
  return {
    name: 'js-silver-rule',
    version: '0.1.0',
    layer: 'silver',
    description: 'Silver in JavaScript: well-formed events, test accounts quarantined',
    outputs: [
      { name: 'silver_events', description: 'Accepted events', schema: schemaBytes(SILVER), partitionBy: ['event_date'], mode: { tag: 'append' } },
      { name: 'quarantine', description: 'Refused rows', schema: schemaBytes(QUARANTINE), partitionBy: [], mode: { tag: 'append' } },
    ],
    limits: { memoryMb: undefined, batchTimeoutMs: undefined },
  };
}

const REQUIRED = ['event_id', 'event_type', 'user_id', 'account_id', 'plan', 'session_id', 'timestamp'];
const KNOWN = new Set([...REQUIRED, 'feature', 'platform', 'country', 'app_version', 'properties']);

/** One IPC stream of `columns` (name → plain array) with exactly `schema`,
 * nullability included: the host checks outputs against the declaration. */
function batchOf(schema, columns) {
  const length = columns[schema.fields[0].name].length;
  const children = schema.fields.map((f) => {
    const vector = vectorFromArray(columns[f.name], f.type);
    if (vector.data.length !== 1) throw new Error(`${f.name}: ${vector.data.length} chunks`);
    return vector.data[0];
  });
  const data = makeData({ type: new Struct(schema.fields), length, nullCount: 0, children });
  return tableToIPC(new Table(schema, new RecordBatch(schema, data)), 'stream');
}

export function transform(input) {
  const rows = tableFromIPC(input);
  const raw = rows.getChild('raw');
  const silver = Object.fromEntries(SILVER.fields.map(f => [f.name, []]));
  const quarantine = { input_row: [], reason: [], detail: [] };
  const refuse = (i, reason, detail) => {
    quarantine.input_row.push(i); quarantine.reason.push(reason); quarantine.detail.push(detail);
  };
  const decoder = new TextDecoder();
  for (let i = 0; i < rows.numRows; i++) {
    let e;
    try { e = JSON.parse(decoder.decode(raw.get(i))); } catch (err) { refuse(i, 'invalid_json', String(err.message)); continue; }
    if (e === null || typeof e !== 'object' || Array.isArray(e)) { refuse(i, 'invalid_json', 'not an object'); continue; }
    const missing = REQUIRED.find(k => typeof e[k] !== 'string' || e[k].trim() === '');
    if (missing) { refuse(i, 'missing_field', `no ${missing}`); continue; }
    const millis = Date.parse(e.timestamp);
    if (!Number.isFinite(millis)) { refuse(i, 'invalid_timestamp', e.timestamp); continue; }
    if (e.account_id.trim().startsWith('test_')) { refuse(i, 'test_account', 'event from an internal test account'); continue; }
    const props = (e.properties && typeof e.properties === 'object') ? e.properties : {};
    const extra = Object.fromEntries(Object.entries(e).filter(([k]) => !KNOWN.has(k)));
    const s = silver;
    s.input_row.push(i);
    for (const k of ['event_id', 'event_type', 'user_id', 'account_id', 'plan', 'session_id']) s[k].push(e[k].trim());
    // apache-arrow takes epoch milliseconds for timestamp and date columns
    // and converts them to the declared unit (µs, days).
    s.event_time.push(millis);
    s.event_date.push(Math.floor(millis / 86_400_000) * 86_400_000);
    for (const k of ['feature', 'platform', 'country', 'app_version']) s[k].push(typeof e[k] === 'string' ? e[k] : null);
    s.method.push(typeof props.method === 'string' ? props.method : null);
    s.duration_ms.push(Number.isInteger(props.duration_ms) ? BigInt(props.duration_ms) : null);
    s.items.push(Number.isInteger(props.items) ? BigInt(props.items) : null);
    s.from_plan.push(typeof props.from_plan === 'string' ? props.from_plan : null);
    s.to_plan.push(typeof props.to_plan === 'string' ? props.to_plan : null);
    s.properties.push(Object.keys(props).length ? JSON.stringify(props) : null);
    s.extra.push(Object.keys(extra).length ? JSON.stringify(extra) : null);
  }
  log('debug', `js-silver-rule: ${silver.input_row.length} accepted, ${quarantine.input_row.length} quarantined`);
  return [
    { table: 'silver_events', ipc: batchOf(SILVER, silver) },
    { table: 'quarantine', ipc: batchOf(QUARANTINE, quarantine) },
  ];
}
