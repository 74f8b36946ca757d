/*
 * Reads the top-level attributes the genops processor wants from every span of
 * a serialized ExportTraceServiceRequest (see scan_request below).
 *
 * Walking attribute lists through the protobuf runtime makes Python objects
 * for every entry; this walks the wire bytes once and makes objects only for
 * what it returns. The pure-Python reader in read.py has the same contract and
 * is what runs where this module was not built.
 */
#include "wire.h"

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
        int slot = slot_of_attribute(c.p, (Py_ssize_t)n, table, mask, refs);
        c.p += n;
        if (slot == -2) goto malformed;
    }
    PyObject *signature = signature_of(refs, mask, n_static);
    if (signature == NULL) return NULL;
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
