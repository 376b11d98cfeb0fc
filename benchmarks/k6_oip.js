// The reference generator: k6's constant-arrival-rate executor sending one OIP inference
// request per iteration, REST (k6/http) or gRPC (k6/net/grpc), checking the status.
// Driven by environment variables set by benchmarks/harness.py:
//   PROTOCOL rest|grpc, ADDRESS (http://host:port or host:port), MODEL, BODY_FILE
//   (REST: the JSON body; gRPC: a ModelInferRequest as protobuf JSON), RATE, DURATION,
//   VUS, PROTO_DIR (folder of grpc_predict_v2.proto).
import http from 'k6/http';
import grpc from 'k6/net/grpc';
import { check } from 'k6';

const PROTOCOL = __ENV.PROTOCOL || 'rest';
const ADDRESS = __ENV.ADDRESS;
const MODEL = __ENV.MODEL;
const BODY = open(__ENV.BODY_FILE);
const VUS = parseInt(__ENV.VUS || '100');

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'min', 'med', 'p(50)', 'p(90)', 'p(99)', 'max'],
  scenarios: {
    oip: {
      executor: 'constant-arrival-rate',
      rate: parseInt(__ENV.RATE || '100'),
      timeUnit: '1s',
      duration: __ENV.DURATION || '20s',
      preAllocatedVUs: VUS,
      maxVUs: VUS * 4,
    },
  },
};

const client = PROTOCOL === 'grpc' ? new grpc.Client() : null;
if (client) {
  client.load([__ENV.PROTO_DIR], 'grpc_predict_v2.proto');
}
const MESSAGE = PROTOCOL === 'grpc' ? JSON.parse(BODY) : null;
const URL = `${ADDRESS}/v2/models/${MODEL}/infer`;
const PARAMS = { headers: { 'Content-Type': 'application/json' } };

let connected = false;

export default function () {
  if (client) {
    if (!connected) {
      client.connect(ADDRESS, { plaintext: true });
      connected = true;
    }
    const res = client.invoke('inference.GRPCInferenceService/ModelInfer', MESSAGE);
    check(res, { 'status OK': (r) => r && r.status === grpc.StatusOK });
  } else {
    const res = http.post(URL, BODY, PARAMS);
    check(res, { 'status 200': (r) => r.status === 200 });
  }
}
