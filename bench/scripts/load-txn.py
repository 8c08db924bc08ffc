# Loads N keys (16-byte names, 100-byte values) through PUT /v1/txn, 64 sets per txn, 8 clients.
# Usage: load-txn.py HOST:PORT N
import json, base64, sys, threading, urllib.request, time
addr, n = sys.argv[1], int(sys.argv[2])
val = base64.b64encode(bytes((ord('a') + i % 26) for i in range(100))).decode()
lock = threading.Lock(); nxt = [0]; errs = []
def worker():
    while True:
        with lock:
            first = nxt[0]; nxt[0] += 64
        if first >= n: return
        ops = [{"KV": {"Verb": "set", "Key": "snap/%011d" % k, "Value": val}} for k in range(first, min(first + 64, n))]
        body = json.dumps(ops).encode()
        for attempt in range(50):
            try:
                req = urllib.request.Request("http://%s/v1/txn" % addr, data=body, method="PUT")
                urllib.request.urlopen(req, timeout=30).read()
                break
            except Exception as e:
                time.sleep(0.2)
        else:
            errs.append(first)
t0 = time.time()
ts = [threading.Thread(target=worker) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print("loaded", n, "in", round(time.time() - t0, 1), "s; failed batches:", len(errs))
