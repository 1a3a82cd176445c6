// A disaster-recovery scenario driven through the Azure SDK for JavaScript, unchanged apart from its
// custom-cloud options: ClientSecretCredential (authorityHost + disableInstanceDiscovery) and
// ApiManagementClient (endpoint + credentialScopes), the CA trusted through NODE_EXTRA_CA_CERTS.
//
// Every step prints one JSON line {name, ok, detail}; the last line is {summary: {...}}. A step
// checks what the SDK returned and fails with the reason. Steps listed in KNOWN_SDK_LIMITS (JSON
// object name -> reason, from the environment) run too, and are reported as such.
//
// Environment: PORTICO_URL, CLIENT_ID, CLIENT_SECRET, STORAGE_ACCOUNT, STORAGE_KEY, CONTAINER,
// RESOURCE_GROUP, PRIMARY, STANDBY, SECRET_VALUE (of the secret named value), KNOWN_SDK_LIMITS.
import { ClientSecretCredential } from "@azure/identity";
import { ApiManagementClient } from "@azure/arm-apimanagement";

const env = process.env;
const url = env.PORTICO_URL;
const sub = "00000000-0000-0000-0000-000000000001";
const scope = "https://management.azure.com/.default";
const rg = env.RESOURCE_GROUP;
const primary = env.PRIMARY;
const standby = env.STANDBY;
const knownLimits = JSON.parse(env.KNOWN_SDK_LIMITS || "{}");

const credential = new ClientSecretCredential("portico", env.CLIENT_ID, env.CLIENT_SECRET, {
  authorityHost: url,
  disableInstanceDiscovery: true,
});
const clientOptions = { endpoint: url, credentialScopes: [scope] };
const client = new ApiManagementClient(credential, sub, clientOptions);
// Backup/restore bodies of 2019-12-01 and older have no accessType: accessKey is required there.
const oldClient = new ApiManagementClient(credential, sub, { ...clientOptions, apiVersion: "2019-12-01" });

const results = [];

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

function same(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  check(a === e, `${what}: got ${a}, expected ${e}`);
}

async function step(name, body) {
  let ok = false;
  let detail;
  try {
    detail = (await body()) ?? "";
    ok = true;
  } catch (err) {
    detail = `${err?.name ?? "Error"}: ${err?.message ?? err}`;
  }
  const line = { name, ok, detail: String(detail).slice(0, 2000) };
  if (name in knownLimits) line.knownSdkLimit = knownLimits[name];
  results.push(line);
  console.log(JSON.stringify(line));
  return ok;
}

async function all(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

// What an error thrown by the SDK says: its class, HTTP status and message (the operation's error).
async function failure(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail, it succeeded");
}

const svcId = (name) =>
  `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.ApiManagement/service/${name}`;

const openapi = {
  openapi: "3.0.1",
  info: { title: "Petstore", version: "1.0" },
  servers: [{ url: "https://pets.backend.example/v1" }],
  paths: {
    "/pets": {
      get: { operationId: "listPets", summary: "List pets", responses: { 200: { description: "ok" } } },
      post: { operationId: "createPet", summary: "Create a pet", responses: { 201: { description: "made" } } },
    },
    "/pets/{petId}": {
      get: {
        operationId: "getPet",
        summary: "Get a pet",
        parameters: [{ name: "petId", in: "path", required: true, schema: { type: "string" } }],
        responses: { 200: { description: "ok" } },
      },
    },
  },
};
const policyTail = "<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>";
const apiPolicy =
  '<policies><inbound><base /><set-header name="x-dr" exists-action="override"><value>{{plain-setting}}</value>' +
  `</set-header></inbound>${policyTail}`;
const opPolicy = `<policies><inbound><base /><rate-limit calls="10" renewal-period="60" /></inbound>${policyTail}`;
const secretValue = env.SECRET_VALUE;
const backupKey = {
  storageAccount: env.STORAGE_ACCOUNT,
  containerName: env.CONTAINER,
  backupName: `${primary}-key`,
  accessKey: env.STORAGE_KEY,
};
const backupIdentity = {
  storageAccount: env.STORAGE_ACCOUNT,
  containerName: env.CONTAINER,
  backupName: `${primary}-identity`,
  accessType: "SystemAssignedManagedIdentity",
};

// What the standby must show after the restore, read from the primary before the backup.
const before = {};

// The API's and its operation's policy documents. Read through the list operations: the SDK's
// apiPolicy.get / apiOperationPolicy.get deserialize a JSON answer as XML and lose the value.
async function policies(svc) {
  const api = await client.apiPolicy.listByApi(rg, svc, "orders");
  const op = await client.apiOperationPolicy.listByOperation(rg, svc, "orders", "get-order");
  return [...api.value, ...op.value].map((p) => p.value);
}

async function snapshot(svc) {
  const apis = (await all(client.api.listByService(rg, svc))).map((a) => a.name).sort();
  const operations = {};
  for (const api of apis) {
    operations[api] = (await all(client.apiOperation.listByApi(rg, svc, api)))
      .map((o) => `${o.method} ${o.urlTemplate} ${o.name}`)
      .sort();
  }
  const namedValues = (await all(client.namedValue.listByService(rg, svc)))
    .map((n) => `${n.name} secret=${n.secret} value=${n.value ?? "(hidden)"}`)
    .sort();
  const products = (await all(client.product.listByService(rg, svc))).map((p) => p.name).sort();
  const productApis = (await all(client.productApi.listByProduct(rg, svc, "gold"))).map((a) => a.name).sort();
  const productGroups = (await all(client.productGroup.listByProduct(rg, svc, "gold"))).map((g) => g.name).sort();
  const users = (await all(client.user.listByService(rg, svc))).map((u) => `${u.name} ${u.email}`).sort();
  const subscriptions = (await all(client.subscription.list(rg, svc)))
    .map((s) => `${s.name} ${s.scope?.replace(svcId(svc), "")} ${s.ownerId?.replace(svcId(svc), "")} ${s.state}`)
    .sort();
  const apiTags = (await all(client.tag.listByApi(rg, svc, "petstore"))).map((t) => t.name).sort();
  const versionSets = (await all(client.apiVersionSet.listByService(rg, svc)))
    .map((v) => `${v.name} ${v.versioningScheme} ${v.displayName}`)
    .sort();
  const backend = await client.backend.get(rg, svc, "pets-backend");
  return {
    apis,
    operations,
    namedValues,
    products,
    productApis,
    productGroups,
    users,
    subscriptions,
    apiTags,
    versionSets,
    backend: `${backend.url} ${backend.protocol}`,
    policies: await policies(svc),
    secret: (await client.namedValue.listValue(rg, svc, "secret-setting")).value,
    keys: await client.subscription.listSecrets(rg, svc, "alice-gold").then((k) => [k.primaryKey, k.secondaryKey]),
  };
}

await step("create resource group (REST with the SDK credential's token)", async () => {
  const token = await credential.getToken(scope);
  const r = await fetch(`${url}/subscriptions/${sub}/resourcegroups/${rg}?api-version=2021-04-01`, {
    method: "PUT",
    headers: { authorization: `Bearer ${token.token}`, "content-type": "application/json" },
    body: JSON.stringify({ location: "westeurope" }),
  });
  const body = await r.json();
  check(r.status === 200 || r.status === 201, `status ${r.status}: ${JSON.stringify(body)}`);
  check(body.name === rg, `name ${body.name}`);
  return `${r.status} ${body.id}`;
});

await step("create primary and standby services", async () => {
  const made = [];
  for (const name of [primary, standby]) {
    const svc = await client.apiManagementService.beginCreateOrUpdateAndWait(rg, name, {
      location: "westeurope",
      sku: { name: "Developer", capacity: 1 },
      publisherEmail: "ops@contoso.example",
      publisherName: "Contoso",
      identity: { type: "SystemAssigned" }, // for the backup without an access key
    });
    check(svc.name === name, `name ${svc.name}`);
    check(svc.provisioningState === "Succeeded", `provisioningState ${svc.provisioningState}`);
    check(svc.identity?.type === "SystemAssigned" && svc.identity.principalId, `identity ${JSON.stringify(svc.identity)}`);
    made.push(`${svc.name} ${svc.sku.name}`);
  }
  return made.join(", ");
});

await step("named values: plain and secret, listValue", async () => {
  const plain = await client.namedValue.beginCreateOrUpdateAndWait(rg, primary, "plain-setting", {
    displayName: "plain-setting",
    value: "plain-value",
    tags: ["dr"],
  });
  same([plain.value, plain.secret], ["plain-value", false], "plain named value");
  const secret = await client.namedValue.beginCreateOrUpdateAndWait(rg, primary, "secret-setting", {
    displayName: "secret-setting",
    value: secretValue,
    secret: true,
  });
  check(secret.secret === true, "secret flag");
  check(secret.value === undefined || secret.value === null, `a secret's value was returned: ${secret.value}`);
  const got = await client.namedValue.get(rg, primary, "secret-setting");
  check(got.value === undefined || got.value === null, "GET shows the secret's value");
  const listed = await client.namedValue.listValue(rg, primary, "secret-setting");
  check(listed.value === secretValue, "listValue does not give the secret back");
  return "plain-setting, secret-setting (hidden on GET, listValue returns it)";
});

await step("backend", async () => {
  const b = await client.backend.createOrUpdate(rg, primary, "pets-backend", {
    url: "https://pets.backend.example/v1",
    protocol: "http",
    description: "pets",
  });
  same([b.name, b.url, b.protocol], ["pets-backend", "https://pets.backend.example/v1", "http"], "backend");
  return b.id;
});

await step("API from an OpenAPI definition (openapi+json)", async () => {
  const api = await client.api.beginCreateOrUpdateAndWait(rg, primary, "petstore", {
    path: "pets",
    format: "openapi+json",
    value: JSON.stringify(openapi),
    protocols: ["https"],
  });
  same([api.name, api.path, api.displayName], ["petstore", "pets", "Petstore"], "imported API");
  check(api.serviceUrl === "https://pets.backend.example/v1", `serviceUrl ${api.serviceUrl}`);
  const ops = (await all(client.apiOperation.listByApi(rg, primary, "petstore")))
    .map((o) => `${o.method} ${o.urlTemplate}`)
    .sort();
  same(ops, ["GET /pets", "GET /pets/{petId}", "POST /pets"], "imported operations");
  return ops.join(", ");
});

await step("API created plainly, with operations", async () => {
  const api = await client.api.beginCreateOrUpdateAndWait(rg, primary, "orders", {
    displayName: "Orders",
    path: "orders",
    serviceUrl: "https://orders.backend.example",
    protocols: ["https"],
    subscriptionRequired: true,
  });
  same([api.name, api.path], ["orders", "orders"], "API");
  const ops = [
    ["get-order", "GET", "/orders/{id}", [{ name: "id", type: "string", required: true }]],
    ["create-order", "POST", "/orders", []],
  ];
  for (const [id, method, urlTemplate, templateParameters] of ops) {
    const op = await client.apiOperation.createOrUpdate(rg, primary, "orders", id, {
      displayName: id,
      method,
      urlTemplate,
      templateParameters,
      responses: [{ statusCode: 200, description: "ok" }],
    });
    same([op.name, op.method, op.urlTemplate], [id, method, urlTemplate], "operation");
  }
  return "orders: get-order, create-order";
});

await step("API and operation policies", async () => {
  const p = await client.apiPolicy.createOrUpdate(rg, primary, "orders", "policy", { format: "rawxml", value: apiPolicy });
  check(p.value && p.value.includes("x-dr"), `API policy answer ${JSON.stringify(p)}`);
  const o = await client.apiOperationPolicy.createOrUpdate(rg, primary, "orders", "get-order", "policy", {
    format: "rawxml",
    value: opPolicy,
  });
  check(o.value && o.value.includes("rate-limit"), `operation policy answer ${JSON.stringify(o)}`);
  same(await policies(primary), [apiPolicy, opPolicy], "policies read back with listByApi/listByOperation");
  return "orders policy, orders/get-order policy";
});

await step("apiPolicy.get returns the policy document", async () => {
  const read = await client.apiPolicy.get(rg, primary, "orders", "policy", { format: "rawxml" });
  check(read.value === apiPolicy, `apiPolicy.get answered ${JSON.stringify(read)}`);
  const op = await client.apiOperationPolicy.get(rg, primary, "orders", "get-order", "policy");
  check(op.value === opPolicy, `apiOperationPolicy.get answered ${JSON.stringify(op)}`);
  return "both documents";
});

await step("product with the API and a group", async () => {
  const group = await client.group.createOrUpdate(rg, primary, "partners", { displayName: "Partners" });
  check(group.name === "partners", `group ${group.name}`);
  const product = await client.product.createOrUpdate(rg, primary, "gold", {
    displayName: "Gold",
    subscriptionRequired: true,
    approvalRequired: false,
    state: "published",
  });
  same([product.name, product.state], ["gold", "published"], "product");
  const linked = await client.productApi.createOrUpdate(rg, primary, "gold", "orders");
  check(linked.name === "orders", `product API ${linked.name}`);
  const g = await client.productGroup.createOrUpdate(rg, primary, "gold", "partners");
  check(g.name === "partners", `product group ${g.name}`);
  const exists = await client.productGroup.checkEntityExists(rg, primary, "gold", "partners");
  check(exists.body === true, `checkEntityExists ${JSON.stringify(exists)}`);
  return "gold: orders, partners";
});

await step("product apiLinks/groupLinks (2023-03-01-preview on): any link id, one link per target", async () => {
  const api = await client.productApiLink.createOrUpdate(rg, primary, "gold", "gold-orders", { apiId: `${svcId(primary)}/apis/orders` });
  check(api.name === "gold-orders" && api.apiId.toLowerCase().endsWith("/apis/orders"), `apiLink ${JSON.stringify(api)}`);
  const group = await client.productGroupLink.createOrUpdate(rg, primary, "gold", "partners", { groupId: `${svcId(primary)}/groups/partners` });
  check(group.groupId.toLowerCase().endsWith("/groups/partners"), `groupLink ${JSON.stringify(group)}`);
  const links = (await all(client.productApiLink.listByProduct(rg, primary, "gold"))).map((l) => l.name);
  same(links, ["gold-orders"], "the product's API links (the link the older path made, renamed)");
  return "gold-orders, partners";
});

await step("user", async () => {
  const u = await client.user.createOrUpdate(rg, primary, "alice", {
    email: "alice@contoso.example",
    firstName: "Alice",
    lastName: "Doe",
    state: "active",
  });
  same([u.name, u.email, u.state], ["alice", "alice@contoso.example", "active"], "user");
  return u.id;
});

await step("subscription: listSecrets, regeneratePrimaryKey", async () => {
  const s = await client.subscription.createOrUpdate(rg, primary, "alice-gold", {
    scope: `${svcId(primary)}/products/gold`,
    ownerId: `${svcId(primary)}/users/alice`,
    displayName: "Alice on Gold",
    state: "active",
  });
  same([s.name, s.state], ["alice-gold", "active"], "subscription");
  check(!s.primaryKey, "the create answer shows the primary key");
  const keys = await client.subscription.listSecrets(rg, primary, "alice-gold");
  check(keys.primaryKey && keys.secondaryKey && keys.primaryKey !== keys.secondaryKey, "listSecrets keys");
  await client.subscription.regeneratePrimaryKey(rg, primary, "alice-gold");
  const after = await client.subscription.listSecrets(rg, primary, "alice-gold");
  check(after.primaryKey !== keys.primaryKey, "regeneratePrimaryKey left the primary key unchanged");
  check(after.secondaryKey === keys.secondaryKey, "regeneratePrimaryKey changed the secondary key");
  return "keys listed, primary regenerated, secondary kept";
});

await step("tags on the API", async () => {
  for (const tag of ["critical", "pets"]) {
    const t = await client.tag.createOrUpdate(rg, primary, tag, { displayName: tag });
    check(t.name === tag, `tag ${t.name}`);
    const linked = await client.tag.assignToApi(rg, primary, "petstore", tag);
    check(linked.name === tag, `tag link ${linked.name}`);
  }
  const tags = (await all(client.tag.listByApi(rg, primary, "petstore"))).map((t) => t.name).sort();
  same(tags, ["critical", "pets"], "tags of petstore");
  return tags.join(", ");
});

await step("API version set and a versioned API", async () => {
  const vs = await client.apiVersionSet.createOrUpdate(rg, primary, "orders-versions", {
    displayName: "Orders",
    versioningScheme: "Segment",
  });
  same([vs.name, vs.versioningScheme], ["orders-versions", "Segment"], "version set");
  const v2 = await client.api.beginCreateOrUpdateAndWait(rg, primary, "orders-v2", {
    displayName: "Orders",
    path: "orders2",
    serviceUrl: "https://orders.backend.example/v2",
    protocols: ["https"],
    apiVersion: "v2",
    apiVersionSetId: `${svcId(primary)}/apiVersionSets/orders-versions`,
  });
  check(v2.apiVersion === "v2", `apiVersion ${v2.apiVersion}`);
  check(v2.apiVersionSetId?.toLowerCase().endsWith("/apiversionsets/orders-versions"), `apiVersionSetId ${v2.apiVersionSetId}`);
  return `${vs.name}: orders-v2 (v2)`;
});

await step("list APIs with $filter and $top paging (all pages)", async () => {
  for (let i = 0; i < 5; i++) {
    await client.api.beginCreateOrUpdateAndWait(rg, primary, `extra-${i}`, {
      displayName: `Extra ${i}`,
      path: `extra/${i}`,
      serviceUrl: "https://extra.backend.example",
      protocols: ["https"],
    });
  }
  const pages = [];
  for await (const page of client.api.listByService(rg, primary, { top: 2 }).byPage()) {
    pages.push(page.map((a) => a.name));
  }
  const expected = ["extra-0", "extra-1", "extra-2", "extra-3", "extra-4", "orders", "orders-v2", "petstore"];
  same(pages.map((p) => p.length), [2, 2, 2, 2], "page sizes with $top=2 over 8 APIs");
  same(pages.flat().sort(), expected, "APIs over all pages");
  const filteredPages = [];
  const filter = "startswith(properties/displayName,'Extra')";
  for await (const page of client.api.listByService(rg, primary, { filter, top: 2 }).byPage()) {
    filteredPages.push(page.map((a) => a.name));
  }
  same(filteredPages.map((p) => p.length), [2, 2, 1], "page sizes of the filtered list");
  const filtered = filteredPages.flat().sort();
  same(filtered, ["extra-0", "extra-1", "extra-2", "extra-3", "extra-4"], "filtered list");
  const byName = (await all(client.api.listByService(rg, primary, { filter: "name eq 'petstore'" }))).map((a) => a.name);
  same(byName, ["petstore"], "filter by name");
  return `pages ${JSON.stringify(pages)}; filtered ${filtered.length}`;
});

await step("export the imported API (openapi-link) and fetch the link", async () => {
  const exported = await client.apiExport.get(rg, primary, "petstore", "openapi-link", "true");
  const link = exported.value?.link;
  check(typeof link === "string" && link.startsWith("https://"), `link ${JSON.stringify(exported)}`);
  const r = await fetch(link); // no bearer token: the link is signed
  check(r.status === 200, `GET link: ${r.status}`);
  const text = await r.text();
  check(text.trimStart().startsWith("openapi:") || text.includes('"openapi"'), `document ${text.slice(0, 200)}`);
  for (const path of ["/pets:", "/pets/{petId}:"]) check(text.includes(path), `document lacks ${path}`);
  return `${exported.exportResultFormat ?? ""} ${text.length} characters`;
});

await step("snapshot of the primary", async () => {
  Object.assign(before, await snapshot(primary));
  same(before.apis.length, 8, "APIs");
  same(before.policies, [apiPolicy, opPolicy], "policies");
  check(before.secret === secretValue, "secret named value");
  check(before.keys.every((k) => typeof k === "string" && k.length >= 16), "subscription keys");
  same(before.operations.petstore.length, 3, "imported operations");
  return `${before.apis.length} APIs, ${before.namedValues.length} named values, ${before.subscriptions.length} subscriptions`;
});

await step("backup with accessKey (2024-05-01)", async () => {
  const r = await client.apiManagementService.beginBackupAndWait(rg, primary, backupKey);
  check(r.name === primary, `result ${JSON.stringify(r)}`);
  return `${backupKey.backupName}: ${r.provisioningState}`;
});

await step("backup without accessKey: system-assigned identity (2024-05-01)", async () => {
  const r = await client.apiManagementService.beginBackupAndWait(rg, primary, backupIdentity);
  check(r.name === primary, `result ${JSON.stringify(r)}`);
  return `${backupIdentity.backupName}: ${r.provisioningState}`;
});

await step("2019-12-01: backup with accessKey works, without it is refused naming accessKey", async () => {
  const r = await oldClient.apiManagementService.beginBackupAndWait(rg, primary, { ...backupKey, backupName: `${primary}-2019` });
  check(r.name === primary, `result ${JSON.stringify(r)}`);
  const { accessType, ...body } = backupIdentity;
  const err = await failure(oldClient.apiManagementService.beginBackupAndWait(rg, primary, body));
  check(err.statusCode === 400, `status ${err.statusCode}: ${err.message}`);
  check(err.message.includes("accessKey"), `message ${err.message}`);
  return err.message;
});

await step("restore into the standby (accessKey)", async () => {
  const r = await client.apiManagementService.beginRestoreAndWait(rg, standby, backupKey);
  check(r.name === standby, `result ${JSON.stringify(r)}`);
  return `${backupKey.backupName} -> ${standby}`;
});

await step("standby has every entity of the primary", async () => {
  const after = await snapshot(standby);
  for (const key of Object.keys(before)) same(after[key], before[key], key);
  const op = await client.apiOperation.get(rg, standby, "orders", "get-order");
  same(op.templateParameters?.map((p) => p.name), ["id"], "template parameters");
  const api = await client.api.get(rg, standby, "orders-v2");
  check(api.apiVersionSetId?.startsWith(svcId(standby)), `version set id ${api.apiVersionSetId}`);
  return "APIs, operations, policies, named values (secret via listValue), backend, product links, user, subscription keys, tags, version set";
});

await step("restore into the standby (system-assigned identity, no accessKey)", async () => {
  const r = await client.apiManagementService.beginRestoreAndWait(rg, standby, backupIdentity);
  check(r.name === standby, `result ${JSON.stringify(r)}`);
  const after = await snapshot(standby);
  for (const key of Object.keys(before)) same(after[key], before[key], key);
  return `${backupIdentity.backupName} -> ${standby}, entities equal`;
});

await step("failed restore: wrong container is a JS Error carrying the cause", async () => {
  const err = await failure(
    client.apiManagementService.beginRestoreAndWait(rg, standby, { ...backupKey, containerName: "no-such-container" }),
  );
  check(err instanceof Error, `not an Error: ${err}`);
  check(err.message.includes("no-such-container"), `message does not name the container: ${err.message}`);
  check(!err.message.includes(env.STORAGE_KEY), "message carries the storage key");
  return err.message;
});

await step("failed restore: nonexistent backup name is a JS Error carrying the cause", async () => {
  const err = await failure(
    client.apiManagementService.beginRestoreAndWait(rg, standby, { ...backupKey, backupName: "no-such-backup" }),
  );
  check(err instanceof Error, `not an Error: ${err}`);
  check(err.message.includes("no-such-backup"), `message does not name the backup: ${err.message}`);
  const apis = (await all(client.api.listByService(rg, standby))).map((a) => a.name).sort();
  same(apis, before.apis, "standby APIs after the failed restores");
  return err.message;
});

await step("delete an API on the standby", async () => {
  await client.api.beginDeleteAndWait(rg, standby, "orders", "*");
  const err = await failure(client.api.get(rg, standby, "orders"));
  check(err.statusCode === 404, `GET after delete: ${err.statusCode} ${err.message}`);
  const primaryApi = await client.api.get(rg, primary, "orders");
  check(primaryApi.name === "orders", "the primary lost its API");
  return "orders deleted on the standby, kept on the primary";
});

await step("delete the standby service", async () => {
  await client.apiManagementService.beginDeleteAndWait(rg, standby);
  const err = await failure(client.apiManagementService.get(rg, standby));
  check(err.statusCode === 404, `GET after delete: ${err.statusCode} ${err.message}`);
  const left = (await all(client.apiManagementService.listByResourceGroup(rg))).map((s) => s.name);
  same(left, [primary], "services left");
  return `${standby} deleted`;
});

const passed = results.filter((r) => r.ok).length;
console.log(
  JSON.stringify({
    summary: {
      steps: results.length,
      passed,
      failed: results.filter((r) => !r.ok).map((r) => r.name),
      knownSdkLimits: results.filter((r) => r.knownSdkLimit).map((r) => r.name),
    },
  }),
);
