/*
 * Reads the top-level attributes the genops processor wants from every span of
 * a serialized ExportTraceServiceRequest (see scan_request below).
 *
 * Walking attribute lists through the protobuf runtime makes Python objects
 * for every entry; this walks the wire bytes once and makes objects only for
 * what it returns. The pure-Python reader in read.py has the same contract and
 * is what runs where this module was not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} cursor;

static int read_varint(cursor *c, uint64_t *out) {
    uint64_t value = 0;
    int shift = 0;
    while (c->p < c->end && shift < 64) {
        uint8_t byte = *c->p++;
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
        shift += 7;
    }
    return -1;
}

/* Skips one field whose tag was just read; -1 on malformed input. Groups (wire types 3 and 4,
 * deprecated but accepted by the protobuf parser) are skipped to their matching end, nested at
 * most MAX_GROUP_DEPTH deep, as the parser's own recursion limit bounds them. */
#define MAX_GROUP_DEPTH 64

static int skip_group(cursor *c, uint64_t field, int depth);

static int skip_field_at(cursor *c, uint64_t tag, int depth) {
    uint64_t n;
    switch ((int)(tag & 7)) {
    case 0:
        return read_varint(c, &n);
    case 1:
        if (c->end - c->p < 8) return -1;
        c->p += 8;
        return 0;
    case 2:
        if (read_varint(c, &n) < 0 || (uint64_t)(c->end - c->p) < n) return -1;
        c->p += n;
        return 0;
    case 3:
        return skip_group(c, tag >> 3, depth + 1);
    case 5:
        if (c->end - c->p < 4) return -1;
        c->p += 4;
        return 0;
    default: /* an end-group tag with no group open, or wire types 6 and 7 */
        return -1;
    }
}

static int skip_group(cursor *c, uint64_t field, int depth) {
    if (depth > MAX_GROUP_DEPTH) return -1;
    while (c->p < c->end) {
        uint64_t tag;
        if (read_varint(c, &tag) < 0) return -1;
        if ((tag & 7) == 4) return tag >> 3 == field ? 0 : -1;
        if (skip_field_at(c, tag, depth) < 0) return -1;
    }
    return -1; /* the group never ended */
}

static int skip_field(cursor *c, uint64_t tag) { return skip_field_at(c, tag, 0); }

/* A new reference to the AnyValue's scalar, Py_None for other kinds, NULL on error. */
static PyObject *decode_any_value(const uint8_t *p, Py_ssize_t len) {
    cursor c = {p, p + len};
    PyObject *result = NULL;
    while (c.p < c.end) {
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) goto malformed;
        int field = (int)(tag >> 3), wire_type = (int)(tag & 7);
        PyObject *value = NULL;
        if (field == 1 && wire_type == 2) {
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) goto malformed;
            value = PyUnicode_DecodeUTF8((const char *)c.p, (Py_ssize_t)n, "strict");
            c.p += n;
            if (value == NULL) {
                Py_XDECREF(result);
                return NULL;
            }
        } else if ((field == 2 || field == 3) && wire_type == 0) {
            if (read_varint(&c, &n) < 0) goto malformed;
            value = field == 2 ? PyBool_FromLong(n != 0) : PyLong_FromLongLong((long long)(int64_t)n);
        } else if (field == 4 && wire_type == 1) {
            double d;
            if (c.end - c.p < 8) goto malformed;
            memcpy(&d, c.p, 8); /* little-endian IEEE 754 on the wire and on supported hosts */
            c.p += 8;
            value = PyFloat_FromDouble(d);
        } else {
            if (skip_field(&c, tag) < 0) goto malformed;
            value = Py_NewRef(Py_None);
        }
        if (value == NULL) {
            Py_XDECREF(result);
            return NULL;
        }
        /* proto3: the last occurrence of a oneof member wins */
        Py_XDECREF(result);
        result = value;
    }
    return result ? result : Py_NewRef(Py_None);
malformed:
    Py_XDECREF(result);
    PyErr_SetString(PyExc_ValueError, "malformed AnyValue");
    return NULL;
}

/*
 * The wanted keys as a small open-addressing table of UTF-8 bytes -> slot, built
 * once per call, so looking up an attribute's key makes no Python object.
 */
#define MAX_KEYS 127
#define FILTER_BIT(key, n) ((uint64_t)1 << (((key)[(n) - 1] + (key)[(n) / 2]) & 63))
#define TABLE_SIZE 512 /* a power of two, well over 2 x MAX_KEYS keys */
/* The span's present keys as a 128-bit mask of two words. */
#define HAS(m, i) ((m)[(i) >> 6] >> ((i) & 63) & 1)
#define SET(m, i) ((m)[(i) >> 6] |= (uint64_t)1 << ((i) & 63))

typedef struct {
    const char *key;
    Py_ssize_t len;
    int slot;
} table_entry;

typedef struct {
    table_entry entries[TABLE_SIZE];
    /* For keys of n bytes (n < 64), bit FILTER_BIT(key, n) of lengths[n] is set when some wanted key
     * has those bytes there: most attribute keys are skipped on it without being hashed. */
    uint64_t lengths[64];
    int long_keys;
    int empty_key;
} key_table;

static uint32_t hash_bytes(const uint8_t *p, Py_ssize_t len) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < len; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static int build_table(PyObject *index, Py_ssize_t size, key_table *keys) {
    memset(keys, 0, sizeof(key_table));
    table_entry *table = keys->entries;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(index, &pos, &key, &value)) {
        Py_ssize_t len, slot = PyLong_AsSsize_t(value);
        if (slot == -1 && PyErr_Occurred()) return -1;
        const char *utf8 = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &len) : NULL;
        if (utf8 == NULL || slot < 0 || slot >= size) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "index maps str keys to slots below size");
            return -1;
        }
        if (len == 0) keys->empty_key = 1;
        else if (len < 64) keys->lengths[len] |= FILTER_BIT((const uint8_t *)utf8, len);
        else keys->long_keys = 1;
        uint32_t i = hash_bytes((const uint8_t *)utf8, len) & (TABLE_SIZE - 1);
        while (table[i].key != NULL) i = (i + 1) & (TABLE_SIZE - 1);
        table[i].key = utf8;
        table[i].len = len;
        table[i].slot = (int)slot;
    }
    return 0;
}

static int lookup(const key_table *keys, const uint8_t *key, Py_ssize_t len) {
    if (len == 0) {
        if (!keys->empty_key) return -1;
    } else if (len < 64 ? !(keys->lengths[len] & FILTER_BIT(key, len)) : !keys->long_keys) {
        return -1;
    }
    const table_entry *table = keys->entries;
    uint32_t i = hash_bytes(key, len) & (TABLE_SIZE - 1);
    while (table[i].key != NULL) {
        if (table[i].len == len && memcmp(table[i].key, key, (size_t)len) == 0) return table[i].slot;
        i = (i + 1) & (TABLE_SIZE - 1);
    }
    return -1;
}

/*
 * scan_request(request_bytes, index, n_static, size)
 *     -> [(mask, static, dynamic, status, duration, trace_state), ...]
 *
 * One entry per span of a serialized ExportTraceServiceRequest, in order.
 * Slots below n_static are "static": their raw AnyValue bytes, each prefixed
 * with the slot number and length, are concatenated in slot order into
 * ``static`` (a hashable signature of the span's non-numeric attributes,
 * built without making a Python object per value). Slots from n_static up are
 * decoded into the ``dynamic`` tuple. ``status`` is the span's status code and
 * ``duration`` its end minus start time in nanoseconds (0 if negative), ``trace_state``
 * the span's W3C tracestate as text, or None when it has none.
 */
typedef struct {
    const uint8_t *value;
    Py_ssize_t len;
} slot_ref;

static PyObject *mask_to_long(const uint64_t mask[2]) {
    if (mask[1] == 0) return PyLong_FromUnsignedLongLong(mask[0]);
    unsigned char bytes[16];
    for (int i = 0; i < 16; i++) bytes[i] = (unsigned char)(mask[i >> 3] >> (8 * (i & 7)));
    return _PyLong_FromByteArray(bytes, 16, 1, 0); /* little-endian, unsigned */
}

static PyObject *scan_one_span(const uint8_t *p, Py_ssize_t len, const key_table *table, Py_ssize_t n_static,
                               Py_ssize_t size) {
    slot_ref refs[MAX_KEYS];
    uint64_t mask[2] = {0, 0}, start_ns = 0, end_ns = 0, status = 0;
    const uint8_t *trace_state = NULL;
    Py_ssize_t trace_state_len = 0;
    cursor c = {p, p + len};
    while (c.p < c.end) {
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) goto malformed;
        if (tag == ((3 << 3) | 2)) { /* trace_state: handed out as text, for the sampling threshold */
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) goto malformed;
            trace_state = c.p;
            trace_state_len = (Py_ssize_t)n;
            c.p += n;
            continue;
        }
        if (tag == ((7 << 3) | 1) || tag == ((8 << 3) | 1)) { /* start / end time, fixed64 */
            uint64_t t = 0;
            if (c.end - c.p < 8) goto malformed;
            for (int i = 7; i >= 0; i--) t = (t << 8) | c.p[i];
            c.p += 8;
            if (tag >> 3 == 7) start_ns = t;
            else end_ns = t;
            continue;
        }
        if (tag == ((15 << 3) | 2)) { /* status: its code, field 3 */
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) goto malformed;
            cursor st = {c.p, c.p + n};
            c.p += n;
            while (st.p < st.end) {
                uint64_t st_tag, v;
                if (read_varint(&st, &st_tag) < 0) goto malformed;
                if (st_tag == ((3 << 3) | 0)) {
                    if (read_varint(&st, &v) < 0) goto malformed;
                    status = v;
                } else if (skip_field(&st, st_tag) < 0) {
                    goto malformed;
                }
            }
            continue;
        }
        if (tag != ((9 << 3) | 2)) {
            if (skip_field(&c, tag) < 0) goto malformed;
            continue;
        }
        if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) goto malformed;
        cursor kv = {c.p, c.p + n};
        c.p += n;
        const uint8_t *key = NULL, *value = NULL;
        uint64_t key_len = 0, value_len = 0;
        while (kv.p < kv.end) {
            uint64_t kv_tag, m;
            if (read_varint(&kv, &kv_tag) < 0) goto malformed;
            if ((kv_tag & 7) == 2 && ((kv_tag >> 3) == 1 || (kv_tag >> 3) == 2)) {
                if (read_varint(&kv, &m) < 0 || (uint64_t)(kv.end - kv.p) < m) goto malformed;
                if ((kv_tag >> 3) == 1) { key = kv.p; key_len = m; }
                else { value = kv.p; value_len = m; }
                kv.p += m;
            } else if (skip_field(&kv, kv_tag) < 0) {
                goto malformed;
            }
        }
        if (key == NULL) continue;
        int slot = lookup(table, key, (Py_ssize_t)key_len);
        if (slot < 0 || HAS(mask, slot)) continue;
        SET(mask, slot);
        refs[slot].value = value;
        refs[slot].len = value ? (Py_ssize_t)value_len : 0;
    }
    Py_ssize_t static_len = 0;
    for (Py_ssize_t i = 0; i < n_static; i++)
        if (HAS(mask, i)) static_len += 1 + 5 + refs[i].len;
    PyObject *signature = PyBytes_FromStringAndSize(NULL, static_len);
    if (signature == NULL) return NULL;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(signature), *start = out;
    for (Py_ssize_t i = 0; i < n_static; i++) {
        if (!HAS(mask, i)) continue;
        *out++ = (uint8_t)i;
        uint64_t l = (uint64_t)refs[i].len;
        do { /* length as a varint, so entries cannot run into each other */
            uint8_t byte = l & 0x7F;
            l >>= 7;
            *out++ = byte | (l ? 0x80 : 0);
        } while (l);
        if (refs[i].len) memcpy(out, refs[i].value, (size_t)refs[i].len);
        out += refs[i].len;
    }
    if (_PyBytes_Resize(&signature, out - start) < 0) return NULL;
    PyObject *dynamic = PyTuple_New(size - n_static);
    if (dynamic == NULL) {
        Py_DECREF(signature);
        return NULL;
    }
    for (Py_ssize_t i = n_static; i < size; i++) {
        PyObject *decoded;
        if (!HAS(mask, i)) {
            decoded = Py_NewRef(Py_None);
        } else {
            decoded = refs[i].value ? decode_any_value(refs[i].value, refs[i].len) : Py_NewRef(Py_None);
            if (decoded == NULL) {
                Py_DECREF(signature);
                Py_DECREF(dynamic);
                return NULL;
            }
            if (decoded == Py_None) {
                Py_DECREF(decoded);
                decoded = Py_NewRef(Py_Ellipsis);
            }
        }
        PyTuple_SET_ITEM(dynamic, i - n_static, decoded);
    }
    PyObject *mask_object = mask_to_long(mask);
    if (mask_object == NULL) {
        Py_DECREF(signature);
        Py_DECREF(dynamic);
        return NULL;
    }
    PyObject *status_object = PyLong_FromUnsignedLongLong(status);
    PyObject *duration_object = PyLong_FromUnsignedLongLong(end_ns > start_ns ? end_ns - start_ns : 0);
    PyObject *state_object = trace_state_len > 0
        ? PyUnicode_DecodeUTF8((const char *)trace_state, trace_state_len, "replace") : Py_NewRef(Py_None);
    PyObject *entry = PyTuple_New(6);
    if (status_object == NULL || duration_object == NULL || state_object == NULL || entry == NULL) {
        Py_XDECREF(status_object);
        Py_XDECREF(duration_object);
        Py_XDECREF(state_object);
        Py_XDECREF(entry);
        Py_DECREF(mask_object);
        Py_DECREF(signature);
        Py_DECREF(dynamic);
        return NULL;
    }
    /* The tuple takes over all six references. */
    PyTuple_SET_ITEM(entry, 0, mask_object);
    PyTuple_SET_ITEM(entry, 1, signature);
    PyTuple_SET_ITEM(entry, 2, dynamic);
    PyTuple_SET_ITEM(entry, 3, status_object);
    PyTuple_SET_ITEM(entry, 4, duration_object);
    PyTuple_SET_ITEM(entry, 5, state_object);
    return entry;
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed Span");
    return NULL;
}

/* Calls back for each length-delimited field ``field`` found directly in [p, end). */
static int each_field(const uint8_t *p, const uint8_t *end, int field,
                      int (*visit)(const uint8_t *, Py_ssize_t, void *), void *state) {
    cursor c = {p, end};
    while (c.p < c.end) {
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) return -2;
        if (tag == (((uint64_t)field << 3) | 2)) {
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) return -2;
            int rc = visit(c.p, (Py_ssize_t)n, state);
            if (rc < 0) return rc;
            c.p += n;
        } else if (skip_field(&c, tag) < 0) {
            return -2;
        }
    }
    return 0;
}

typedef struct {
    PyObject *out;
    const key_table *table;
    Py_ssize_t n_static, size;
} walk_state;

static int visit_span(const uint8_t *p, Py_ssize_t len, void *state) {
    walk_state *w = (walk_state *)state;
    PyObject *entry = scan_one_span(p, len, w->table, w->n_static, w->size);
    if (entry == NULL) return -1;
    int rc = PyList_Append(w->out, entry);
    Py_DECREF(entry);
    return rc;
}

static int visit_scope(const uint8_t *p, Py_ssize_t len, void *state) {
    return each_field(p, p + len, 2, visit_span, state);
}

static int visit_resource(const uint8_t *p, Py_ssize_t len, void *state) {
    return each_field(p, p + len, 2, visit_scope, state);
}

static PyObject *scan_request(PyObject *self, PyObject *args) {
    Py_buffer buffer;
    PyObject *index;
    Py_ssize_t n_static, size;
    if (!PyArg_ParseTuple(args, "y*O!nn", &buffer, &PyDict_Type, &index, &n_static, &size)) return NULL;
    if (size < 0 || size > MAX_KEYS || n_static < 0 || n_static > size) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "need 0 <= n_static <= size <= 127");
        return NULL;
    }
    key_table table;
    if (build_table(index, size, &table) < 0) {
        PyBuffer_Release(&buffer);
        return NULL;
    }
    walk_state state = {PyList_New(0), &table, n_static, size};
    if (state.out == NULL) {
        PyBuffer_Release(&buffer);
        return NULL;
    }
    const uint8_t *p = (const uint8_t *)buffer.buf;
    int rc = each_field(p, p + buffer.len, 1, visit_resource, &state);
    PyBuffer_Release(&buffer);
    if (rc < 0) {
        if (rc == -2) PyErr_SetString(PyExc_ValueError, "malformed ExportTraceServiceRequest");
        Py_DECREF(state.out);
        return NULL;
    }
    return state.out;
}

/*
 * splice_request(request_bytes, additions) -> bytes
 *
 * The request with additions[i] appended to the i-th span's encoding, and the
 * length prefixes of every enclosing span, ScopeSpans and ResourceSpans
 * rewritten to match: the wire form of the request after the genops processor
 * appended attributes to its spans, without serializing it again. additions
 * holds one bytes object (possibly empty) per span, in request order.
 */
typedef struct {
    uint8_t *data;
    Py_ssize_t len, cap;
} buffer_t;

static int put(buffer_t *b, const void *p, Py_ssize_t n) {
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *grown = PyMem_Realloc(b->data, (size_t)cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, (size_t)n);
    b->len += n;
    return 0;
}

static int put_varint(buffer_t *b, uint64_t v) {
    uint8_t tmp[10];
    int n = 0;
    do {
        uint8_t byte = v & 0x7F;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    return put(b, tmp, n);
}

typedef struct {
    PyObject *additions;
    Py_ssize_t next;
} splice_state;

/* Copies one message at ``depth`` (0 request, 1 ResourceSpans, 2 ScopeSpans) into ``out``. */
static int splice_message(const uint8_t *p, Py_ssize_t len, int depth, splice_state *st, buffer_t *out) {
    cursor c = {p, p + len};
    while (c.p < c.end) {
        const uint8_t *field_start = c.p;
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) return -2;
        int child = (depth == 0 && tag == ((1 << 3) | 2)) || (depth >= 1 && tag == ((2 << 3) | 2));
        if (!child) {
            if (skip_field(&c, tag) < 0) return -2;
            if (put(out, field_start, c.p - field_start) < 0) return -1;
            continue;
        }
        if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) return -2;
        const uint8_t *body = c.p;
        c.p += n;
        if (put_varint(out, tag) < 0) return -1;
        if (depth == 2) { /* a span: its bytes, then its addition */
            if (st->next >= PyList_GET_SIZE(st->additions)) {
                PyErr_SetString(PyExc_ValueError, "fewer additions than spans");
                return -1;
            }
            PyObject *extra = PyList_GET_ITEM(st->additions, st->next++);
            if (!PyBytes_Check(extra)) {
                PyErr_SetString(PyExc_TypeError, "additions must be bytes");
                return -1;
            }
            Py_ssize_t extra_len = PyBytes_GET_SIZE(extra);
            if (put_varint(out, n + (uint64_t)extra_len) < 0 || put(out, body, (Py_ssize_t)n) < 0
                || put(out, PyBytes_AS_STRING(extra), extra_len) < 0)
                return -1;
            continue;
        }
        buffer_t inner = {NULL, 0, 0};
        /* Sized for the body and some additions, so the copy rarely grows. */
        inner.data = PyMem_Malloc((size_t)n + (size_t)n / 2 + 64);
        if (inner.data == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        inner.cap = (Py_ssize_t)n + (Py_ssize_t)n / 2 + 64;
        int rc = splice_message(body, (Py_ssize_t)n, depth + 1, st, &inner);
        if (rc == 0) rc = put_varint(out, (uint64_t)inner.len);
        if (rc == 0 && inner.len) rc = put(out, inner.data, inner.len);
        PyMem_Free(inner.data);
        if (rc < 0) return rc;
    }
    return 0;
}

static PyObject *splice_request(PyObject *self, PyObject *args) {
    Py_buffer buffer;
    PyObject *additions;
    if (!PyArg_ParseTuple(args, "y*O!", &buffer, &PyList_Type, &additions)) return NULL;
    /* Sized for the request and its additions, so the copy rarely grows. */
    buffer_t out = {PyMem_Malloc((size_t)buffer.len * 2 + 64), 0, buffer.len * 2 + 64};
    if (out.data == NULL) {
        PyBuffer_Release(&buffer);
        return PyErr_NoMemory();
    }
    splice_state st = {additions, 0};
    int rc = splice_message((const uint8_t *)buffer.buf, buffer.len, 0, &st, &out);
    PyBuffer_Release(&buffer);
    if (rc == 0 && st.next != PyList_GET_SIZE(additions)) {
        PyErr_SetString(PyExc_ValueError, "more additions than spans");
        rc = -1;
    }
    if (rc < 0) {
        if (rc == -2) PyErr_SetString(PyExc_ValueError, "malformed ExportTraceServiceRequest");
        PyMem_Free(out.data);
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize((const char *)out.data, out.len);
    PyMem_Free(out.data);
    return result;
}

/*
 * span_ids_problem(request_bytes) -> None, or (resource, scope, span, what) of the first span whose
 * ids the OTLP spec refuses: trace_id must be 16 bytes, span_id 8, parent_span_id empty or 8,
 * and a link's trace_id 16 and span_id 8. Of a field given twice the last counts, as for the
 * parser. Walks the bytes only; the request has parsed already.
 */
typedef struct {
    Py_ssize_t resource, scope, span;
    const char *what;
} id_walk;

static const char *link_problem(const uint8_t *p, Py_ssize_t len) {
    cursor c = {p, p + len};
    Py_ssize_t trace = 0, span = 0;
    while (c.p < c.end) {
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) return "malformed link";
        if ((tag == ((1 << 3) | 2)) || (tag == ((2 << 3) | 2))) {
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) return "malformed link";
            if (tag >> 3 == 1) trace = (Py_ssize_t)n;
            else span = (Py_ssize_t)n;
            c.p += n;
        } else if (skip_field(&c, tag) < 0) {
            return "malformed link";
        }
    }
    if (trace != 16) return "a link's trace_id must be 16 bytes";
    if (span != 8) return "a link's span_id must be 8 bytes";
    return NULL;
}

static const char *span_problem(const uint8_t *p, Py_ssize_t len) {
    cursor c = {p, p + len};
    Py_ssize_t trace = 0, span = 0, parent = 0;
    while (c.p < c.end) {
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) return "malformed span";
        uint64_t field = tag >> 3;
        if ((tag & 7) == 2 && (field == 1 || field == 2 || field == 4 || field == 13)) {
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) return "malformed span";
            if (field == 1) trace = (Py_ssize_t)n;
            else if (field == 2) span = (Py_ssize_t)n;
            else if (field == 4) parent = (Py_ssize_t)n;
            else {
                const char *problem = link_problem(c.p, (Py_ssize_t)n);
                if (problem != NULL) return problem;
            }
            c.p += n;
        } else if (skip_field(&c, tag) < 0) {
            return "malformed span";
        }
    }
    if (trace != 16) return "trace_id must be 16 bytes";
    if (span != 8) return "span_id must be 8 bytes";
    if (parent != 0 && parent != 8) return "parent_span_id must be empty or 8 bytes";
    return NULL;
}

static int visit_id_span(const uint8_t *p, Py_ssize_t len, void *state) {
    id_walk *w = state;
    w->what = span_problem(p, len);
    if (w->what != NULL) return -3; /* found: stop the walk */
    w->span++;
    return 0;
}

static int visit_id_scope(const uint8_t *p, Py_ssize_t len, void *state) {
    id_walk *w = state;
    w->span = 0;
    int rc = each_field(p, p + len, 2, visit_id_span, state);
    if (rc == 0) w->scope++;
    return rc;
}

static int visit_id_resource(const uint8_t *p, Py_ssize_t len, void *state) {
    id_walk *w = state;
    w->scope = 0;
    int rc = each_field(p, p + len, 2, visit_id_scope, state);
    if (rc == 0) w->resource++;
    return rc;
}

static PyObject *span_ids_problem(PyObject *self, PyObject *args) {
    Py_buffer buffer;
    if (!PyArg_ParseTuple(args, "y*", &buffer)) return NULL;
    id_walk w = {0, 0, 0, NULL};
    const uint8_t *p = (const uint8_t *)buffer.buf;
    int rc = each_field(p, p + buffer.len, 1, visit_id_resource, &w);
    PyBuffer_Release(&buffer);
    if (rc == -3) return Py_BuildValue("(nnns)", w.resource, w.scope, w.span, w.what);
    if (rc < 0) {
        PyErr_SetString(PyExc_ValueError, "malformed ExportTraceServiceRequest");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"span_ids_problem", span_ids_problem, METH_VARARGS,
     "span_ids_problem(request_bytes) -> None or (resource, scope, span, problem) of the first bad span ids"},
    {"splice_request", splice_request, METH_VARARGS,
     "splice_request(request_bytes, additions) -> request bytes with additions[i] appended to span i"},
    {"scan_request", scan_request, METH_VARARGS,
     "scan_request(request_bytes, index, n_static, size) -> [(mask, static signature, dynamic values)]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
