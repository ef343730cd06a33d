// Real JavaScript Trino clients against a running gateway: `node clients.js <http://host:port> <user>`.
// Prints one JSON object with what each client saw; tests/test_js_clients.py asserts on it.
'use strict';
const { Trino, BasicAuth } = require('trino-client');
const presto = require('presto-client');

const SLOW = "SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_comment || b.l_comment = 'x'";

async function trinoJs(server, user) {
  const trino = Trino.create({ server, catalog: 'demo', schema: 'tpch', auth: new BasicAuth(user),
                               source: 'trino-js-client' });
  async function run(sql) {
    const result = { data: [], error: null, id: null, columns: null };
    for await (const response of await trino.query(sql)) {
      result.id = response.id;
      result.columns = result.columns || (response.columns || []).map(c => c.name);
      if (response.error) result.error = { name: response.error.errorName, message: response.error.message };
      result.data.push(...(response.data || []));
    }
    return result;
  }
  const out = {};
  out.small = await run('SELECT n_name FROM nation WHERE n_nationkey = 1');
  const big = await run('SELECT l_orderkey FROM lineitem');
  out.big = { rows: big.data.length, error: big.error };
  out.error = await run('SELEC 1');
  out.info = await trino.queryInfo(out.small.id);
  const slow = await trino.query(SLOW);
  const slowId = slow.iter.queryResult.id;  // the first (QUEUED) response names the query
  await trino.cancel(slowId);
  const cancelled = { error: null };
  for await (const response of slow) {
    if (response.error) cancelled.error = response.error.errorName;
  }
  out.cancelled = cancelled;
  return out;
}

function prestoExecute(client, sql) {
  return new Promise(resolve => {
    const result = { data: [], columns: null, id: null, error: null };
    client.execute({
      query: sql, catalog: 'demo', schema: 'tpch',
      state: (error, id) => { result.id = id; },
      columns: (error, columns) => { result.columns = columns.map(c => c.name); },
      data: (error, data) => { result.data.push(...data); },
      success: () => resolve(result),
      error: error => { result.error = { name: error.errorName, message: error.message }; resolve(result); },
    });
  });
}

function callback(fn) {
  return new Promise(resolve => fn((error, data) => resolve(error ? { error: error.message || error } : data)));
}

async function prestoClient(server, user) {
  const url = new URL(server);
  const client = new presto.Client({ host: url.hostname, port: Number(url.port), user, engine: 'trino',
                                     catalog: 'demo', schema: 'tpch', source: 'presto-client', checkInterval: 50 });
  const out = {};
  out.small = await prestoExecute(client, 'SELECT n_name FROM nation WHERE n_nationkey = 1');
  const big = await prestoExecute(client, 'SELECT l_orderkey FROM lineitem');
  out.big = { rows: big.data.length, error: big.error };
  out.error = await prestoExecute(client, 'SELECT nope FROM nation');
  out.nodes = await callback(cb => client.nodes(cb));
  out.info = await callback(cb => client.query(out.small.id, cb));
  out.killed = await new Promise(resolve => {
    let killed = false;
    client.execute({
      query: SLOW, catalog: 'demo', schema: 'tpch',
      state: (error, id) => {
        if (!killed && id) { killed = true; client.kill(id, () => {}); }
      },
      success: () => resolve({ error: null }),
      error: error => resolve({ error: error.errorName || error.message }),
    });
  });
  return out;
}

(async () => {
  const [server, user] = process.argv.slice(2);
  const out = { trino_client: await trinoJs(server, user), presto_client: await prestoClient(server, user) };
  process.stdout.write(JSON.stringify(out));
})().catch(error => { process.stderr.write(String(error && error.stack || error)); process.exit(1); });
