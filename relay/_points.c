/*
 * The data points of a serialized ExportMetricsServiceRequest, read and extended on the wire
 * (see relay/points.py, whose pure-Python path has the same contract):
 *
 *   signatures(data, index, size) -> [(resource bytes, [signature of each data point])] or None
 *   count(data) -> how many data points the request holds, or None
 *   splice(data, additions) -> data with additions[i] appended to the i-th data point's attributes
 *   histograms(data, names, with_buckets) -> [(resource bytes, [(scope, metric, name, temporality,
 *                                              shape, numbers, count)])] or None
 *   accumulate(...): what one histogram's points grew by, into a request's accumulator
 *
 * None means the bytes hold something the protobuf parser merges (a second resource field, or a
 * metric with more than one data field), so that their points do not line up with the parsed
 * message's; the caller asks again with the message's own serialization, which never does.
 */
#include "wire.h"

#define IRREGULAR -3

/* The Metric fields of the data oneof: gauge, sum, histogram, exponential_histogram, summary. */
static int is_data_field(uint64_t field) {
    return field == 5 || field == 7 || field == 9 || field == 10 || field == 11;
}

/* The attributes field of a data point of that kind: NumberDataPoint's and SummaryDataPoint's
 * is 7, HistogramDataPoint's 9, ExponentialHistogramDataPoint's 1. */
static int attributes_field(int kind) {
    return kind == 9 ? 9 : kind == 10 ? 1 : 7;
}

typedef struct {
    const uint8_t *name;
    Py_ssize_t name_len;
    int kind; /* the data field's number, 0 for none */
    const uint8_t *data;
    Py_ssize_t data_len;
} metric_parts;

static int read_metric(const uint8_t *p, Py_ssize_t len, metric_parts *m) {
    cursor c = {p, p + len};
    memset(m, 0, sizeof *m);
    while (c.p < c.end) {
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) return -2;
        uint64_t field = tag >> 3;
        if ((tag & 7) == 2 && (field == 1 || is_data_field(field))) {
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) return -2;
            if (field == 1) {
                m->name = c.p;
                m->name_len = (Py_ssize_t)n;
            } else {
                if (m->kind) return IRREGULAR;
                m->kind = (int)field;
                m->data = c.p;
                m->data_len = (Py_ssize_t)n;
            }
            c.p += n;
        } else if (skip_field(&c, tag) < 0) {
            return -2;
        }
    }
    return 0;
}

/* What a walk does at each resource (before its metrics) and at each metric. */
typedef struct walker walker;
struct walker {
    int (*resource)(walker *w, const uint8_t *p, Py_ssize_t len);
    int (*metric)(walker *w, Py_ssize_t scope, Py_ssize_t index, const metric_parts *m);
    Py_ssize_t scope, index;
};

static int visit_metric(const uint8_t *p, Py_ssize_t len, void *state) {
    walker *w = state;
    metric_parts m;
    int rc = read_metric(p, len, &m);
    if (rc == 0) rc = w->metric(w, w->scope, w->index, &m);
    w->index++;
    return rc;
}

static int visit_scope(const uint8_t *p, Py_ssize_t len, void *state) {
    walker *w = state;
    w->index = 0;
    int rc = each_field(p, p + len, 2, visit_metric, state);
    w->scope++;
    return rc;
}

static int visit_resource(const uint8_t *p, Py_ssize_t len, void *state) {
    walker *w = state;
    const uint8_t *resource = p; /* no resource field: an empty resource */
    Py_ssize_t resource_len = 0;
    int seen = 0;
    cursor c = {p, p + len};
    while (c.p < c.end) {
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) return -2;
        if (tag == ((1 << 3) | 2)) {
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) return -2;
            if (seen++) return IRREGULAR;
            resource = c.p;
            resource_len = (Py_ssize_t)n;
            c.p += n;
        } else if (skip_field(&c, tag) < 0) {
            return -2;
        }
    }
    int rc = w->resource(w, resource, resource_len);
    if (rc < 0) return rc;
    w->scope = 0;
    return each_field(p, p + len, 2, visit_scope, state);
}

/* Walks the request; the Python result (a new reference), Py_None if irregular, NULL on error. */
static PyObject *walk(const uint8_t *p, Py_ssize_t len, walker *w, PyObject *out) {
    int rc = each_field(p, p + len, 1, visit_resource, w);
    if (rc == 0) return out;
    Py_DECREF(out);
    if (rc == IRREGULAR) Py_RETURN_NONE;
    if (rc == -2) PyErr_SetString(PyExc_ValueError, "malformed ExportMetricsServiceRequest");
    return NULL;
}

/* Appends (resource bytes, []) to out; the new list is where the resource's metrics go. */
static PyObject *open_resource(PyObject *out, const uint8_t *p, Py_ssize_t len) {
    PyObject *items = PyList_New(0);
    PyObject *entry = items ? Py_BuildValue("(y#N)", (const char *)p, len, items) : NULL;
    if (entry == NULL) return NULL;
    int rc = PyList_Append(out, entry);
    Py_DECREF(entry);
    return rc < 0 ? NULL : items;
}

/* signatures ---------------------------------------------------------------------------- */

typedef struct {
    walker base;
    PyObject *out, *current;
    const key_table *table;
    Py_ssize_t size;
} signature_walk;

static int signature_resource(walker *w, const uint8_t *p, Py_ssize_t len) {
    signature_walk *s = (signature_walk *)w;
    s->current = open_resource(s->out, p, len);
    return s->current ? 0 : -1;
}

static int signature_metric(walker *w, Py_ssize_t scope, Py_ssize_t index, const metric_parts *m) {
    signature_walk *s = (signature_walk *)w;
    if (!m->kind) return 0;
    uint64_t wanted = ((uint64_t)attributes_field(m->kind) << 3) | 2;
    cursor points = {m->data, m->data + m->data_len};
    while (points.p < points.end) {
        uint64_t tag, n;
        if (read_varint(&points, &tag) < 0) return -2;
        if (tag != ((1 << 3) | 2)) {
            if (skip_field(&points, tag) < 0) return -2;
            continue;
        }
        if (read_varint(&points, &n) < 0 || (uint64_t)(points.end - points.p) < n) return -2;
        cursor point = {points.p, points.p + n};
        points.p += n;
        slot_ref refs[MAX_KEYS];
        uint64_t mask[2] = {0, 0};
        while (point.p < point.end) {
            if (read_varint(&point, &tag) < 0) return -2;
            if (tag != wanted) {
                if (skip_field(&point, tag) < 0) return -2;
                continue;
            }
            if (read_varint(&point, &n) < 0 || (uint64_t)(point.end - point.p) < n) return -2;
            if (slot_of_attribute(point.p, (Py_ssize_t)n, s->table, mask, refs) == -2) return -2;
            point.p += n;
        }
        PyObject *signature = signature_of(refs, mask, s->size);
        if (signature == NULL) return -1;
        int rc = PyList_Append(s->current, signature);
        Py_DECREF(signature);
        if (rc < 0) return -1;
    }
    return 0;
}

static PyObject *signatures(PyObject *self, PyObject *args) {
    Py_buffer buffer;
    PyObject *index;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y*O!n", &buffer, &PyDict_Type, &index, &size)) return NULL;
    key_table table;
    if (size < 0 || size > MAX_KEYS) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "need 0 <= size <= 127");
        return NULL;
    }
    if (build_table(index, size, &table) < 0) {
        PyBuffer_Release(&buffer);
        return NULL;
    }
    signature_walk s = {{signature_resource, signature_metric, 0, 0}, PyList_New(0), NULL, &table, size};
    PyObject *result = s.out ? walk((const uint8_t *)buffer.buf, buffer.len, &s.base, s.out) : NULL;
    PyBuffer_Release(&buffer);
    return result;
}

/* count --------------------------------------------------------------------------------- */

typedef struct {
    walker base;
    Py_ssize_t total;
} count_walk;

static int count_resource(walker *w, const uint8_t *p, Py_ssize_t len) {
    (void)w, (void)p, (void)len;
    return 0;
}

static int count_point(const uint8_t *p, Py_ssize_t len, void *state) {
    (void)p, (void)len;
    ((count_walk *)state)->total++;
    return 0;
}

static int count_metric(walker *w, Py_ssize_t scope, Py_ssize_t index, const metric_parts *m) {
    (void)scope, (void)index;
    return m->kind ? each_field(m->data, m->data + m->data_len, 1, count_point, w) : 0;
}

static PyObject *count(PyObject *self, PyObject *args) {
    Py_buffer buffer;
    if (!PyArg_ParseTuple(args, "y*", &buffer)) return NULL;
    count_walk s = {{count_resource, count_metric, 0, 0}, 0};
    const uint8_t *p = (const uint8_t *)buffer.buf;
    int rc = each_field(p, p + buffer.len, 1, visit_resource, &s.base);
    PyBuffer_Release(&buffer);
    if (rc == IRREGULAR) Py_RETURN_NONE;
    if (rc < 0) {
        PyErr_SetString(PyExc_ValueError, "malformed ExportMetricsServiceRequest");
        return NULL;
    }
    return PyLong_FromSsize_t(s.total);
}

/* splice -------------------------------------------------------------------------------- */

typedef struct {
    PyObject *additions;
    Py_ssize_t next;
    int kind;
    Py_ssize_t *sizes; /* each spliced message's new length, in the order the walk meets them */
    Py_ssize_t n_sizes, cap_sizes, at_size;
} splice_state;

static int varint_size(uint64_t v) {
    int n = 1;
    while (v >>= 7) n++;
    return n;
}

/* Whether the field is a message the splice goes into at ``depth`` (0 request, 1 ResourceMetrics,
 * 2 ScopeMetrics, 3 Metric, 4 its data, whose children are the data points). */
static int is_child(uint64_t tag, int depth) {
    uint64_t field = tag >> 3;
    return (tag & 7) == 2 && (depth == 0 || depth == 4 ? field == 1 : depth == 3 ? is_data_field(field) : field == 2);
}

static PyObject *next_addition(splice_state *st) {
    if (st->next >= PyList_GET_SIZE(st->additions)) {
        PyErr_SetString(PyExc_ValueError, "fewer additions than data points");
        return NULL;
    }
    PyObject *extra = PyList_GET_ITEM(st->additions, st->next++);
    if (!PyBytes_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "additions must be bytes");
        return NULL;
    }
    return extra;
}

/* First pass: how many bytes the message at ``depth`` grows by; records the new length of each
 * message below it, so the second pass writes every byte once, in place. The tags of fields 1, 7
 * and 9 are one byte each, so a point grows by exactly its addition's length. */
static Py_ssize_t grown(const uint8_t *p, Py_ssize_t len, int depth, splice_state *st) {
    cursor c = {p, p + len};
    Py_ssize_t added = 0;
    while (c.p < c.end) {
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) return -2;
        if (!is_child(tag, depth)) {
            if (skip_field(&c, tag) < 0) return -2;
            continue;
        }
        if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) return -2;
        const uint8_t *body = c.p;
        c.p += n;
        Py_ssize_t extra;
        if (depth == 4) {
            PyObject *addition = next_addition(st);
            if (addition == NULL) return -1;
            extra = PyBytes_GET_SIZE(addition);
        } else {
            if (st->n_sizes == st->cap_sizes) {
                Py_ssize_t cap = st->cap_sizes ? st->cap_sizes * 2 : 256;
                Py_ssize_t *more = PyMem_Realloc(st->sizes, (size_t)cap * sizeof *more);
                if (more == NULL) {
                    PyErr_NoMemory();
                    return -1;
                }
                st->sizes = more;
                st->cap_sizes = cap;
            }
            Py_ssize_t slot = st->n_sizes++;
            extra = grown(body, (Py_ssize_t)n, depth + 1, st);
            if (extra < 0) return extra;
            st->sizes[slot] = (Py_ssize_t)n + extra;
        }
        added += extra + varint_size(n + (uint64_t)extra) - varint_size(n);
    }
    return added;
}

/* A data point's addition: KeyValue fields encoded as field 1, written as ``field``. */
static int put_addition(buffer_t *out, PyObject *addition, int field) {
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(addition);
    cursor c = {p, p + PyBytes_GET_SIZE(addition)};
    while (c.p < c.end) {
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0 || tag != ((1 << 3) | 2) || read_varint(&c, &n) < 0
            || (uint64_t)(c.end - c.p) < n) {
            PyErr_SetString(PyExc_ValueError, "an addition must be KeyValue fields numbered 1");
            return -1;
        }
        if (put_varint(out, ((uint64_t)field << 3) | 2) < 0 || put_varint(out, n) < 0
            || put(out, c.p, (Py_ssize_t)n) < 0)
            return -1;
        c.p += n;
    }
    return 0;
}

/* Second pass: copies the message at ``depth`` into ``out``, each data point followed by its
 * addition, with the lengths the first pass found. */
static int spliced(const uint8_t *p, Py_ssize_t len, int depth, splice_state *st, buffer_t *out) {
    cursor c = {p, p + len};
    const uint8_t *copied = p; /* fields up to here are written */
    while (c.p < c.end) {
        const uint8_t *field_start = c.p;
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) return -2;
        if (!is_child(tag, depth)) {
            if (skip_field(&c, tag) < 0) return -2;
            continue;
        }
        if (put(out, copied, field_start - copied) < 0) return -1;
        if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) return -2;
        const uint8_t *body = c.p;
        c.p += n;
        copied = c.p;
        if (put_varint(out, tag) < 0) return -1;
        if (depth == 4) {
            PyObject *extra = PyList_GET_ITEM(st->additions, st->next++);
            if (put_varint(out, n + (uint64_t)PyBytes_GET_SIZE(extra)) < 0 || put(out, body, (Py_ssize_t)n) < 0
                || put_addition(out, extra, attributes_field(st->kind)) < 0)
                return -1;
            continue;
        }
        if (depth == 3) st->kind = (int)(tag >> 3);
        if (put_varint(out, (uint64_t)st->sizes[st->at_size++]) < 0) return -1;
        int rc = spliced(body, (Py_ssize_t)n, depth + 1, st, out);
        if (rc < 0) return rc;
    }
    return put(out, copied, c.end - copied);
}

static PyObject *splice(PyObject *self, PyObject *args) {
    Py_buffer buffer;
    PyObject *additions;
    if (!PyArg_ParseTuple(args, "y*O!", &buffer, &PyList_Type, &additions)) return NULL;
    splice_state st = {additions, 0, 0, NULL, 0, 0, 0};
    const uint8_t *p = (const uint8_t *)buffer.buf;
    PyObject *result = NULL;
    buffer_t out;
    Py_ssize_t added = grown(p, buffer.len, 0, &st);
    if (added >= 0 && st.next != PyList_GET_SIZE(additions)) {
        PyErr_SetString(PyExc_ValueError, "more additions than data points");
        added = -1;
    }
    if (added >= 0) {
        /* Written straight into the result: its size is known. */
        result = PyBytes_FromStringAndSize(NULL, buffer.len + added);
        if (result != NULL) {
            out = (buffer_t){(uint8_t *)PyBytes_AS_STRING(result), 0, buffer.len + added, 1};
            st.next = 0;
            int rc = spliced(p, buffer.len, 0, &st, &out);
            if (rc == 0 && out.len != buffer.len + added) {
                PyErr_SetString(PyExc_SystemError, "splice: fewer bytes than were sized");
                rc = -1;
            }
            if (rc < 0) {
                if (rc == -2) PyErr_SetString(PyExc_ValueError, "malformed ExportMetricsServiceRequest");
                Py_CLEAR(result);
            }
        }
    } else if (added == -2) {
        PyErr_SetString(PyExc_ValueError, "malformed ExportMetricsServiceRequest");
    }
    PyMem_Free(st.sizes);
    PyBuffer_Release(&buffer);
    return result;
}

/* histograms ---------------------------------------------------------------------------- */

typedef struct {
    walker base;
    PyObject *out, *current, *names, *with_buckets;
} histogram_walk;

static int histogram_resource(walker *w, const uint8_t *p, Py_ssize_t len) {
    histogram_walk *h = (histogram_walk *)w;
    h->current = open_resource(h->out, p, len);
    return h->current ? 0 : -1;
}

/* Copies the point's attribute and explicit_bounds fields into shape (then a 0, which is no tag,
 * so one point's part cannot run into the next's), and its numbers into numbers: start, time,
 * sum, count, how many bucket counts, and those counts where buckets_wanted (all 8 bytes each,
 * little-endian, the sum an IEEE double). */
static int histogram_point(const uint8_t *p, Py_ssize_t len, int buckets_wanted, buffer_t *shape,
                           buffer_t *numbers) {
    cursor c = {p, p + len};
    uint64_t head[5] = {0, 0, 0, 0, 0}; /* start, time, sum bits, count, bucket count */
    Py_ssize_t at = numbers->len;
    if (put(numbers, head, sizeof head) < 0) return -1;
    while (c.p < c.end) {
        const uint8_t *field_start = c.p;
        uint64_t tag, n;
        if (read_varint(&c, &tag) < 0) return -2;
        uint64_t field = tag >> 3;
        int wire_type = (int)(tag & 7);
        if (wire_type == 1 && field >= 2 && field <= 6) {
            if (c.end - c.p < 8) return -2;
            if (field < 6) memcpy(&head[field == 4 ? 3 : field == 5 ? 2 : field - 2], c.p, 8);
            else {
                head[4]++;
                if (buckets_wanted && put(numbers, c.p, 8) < 0) return -1;
            }
            c.p += 8;
            continue;
        }
        if (wire_type == 2 && field == 6) { /* packed bucket counts */
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n || n % 8) return -2;
            head[4] += n / 8;
            if (buckets_wanted && put(numbers, c.p, (Py_ssize_t)n) < 0) return -1;
            c.p += n;
            continue;
        }
        int keep = (wire_type == 2 && (field == 9 || field == 7)) || (wire_type == 1 && field == 7);
        if (skip_field(&c, tag) < 0) return -2;
        if (keep && put(shape, field_start, c.p - field_start) < 0) return -1;
    }
    memcpy(numbers->data + at, head, sizeof head); /* little-endian hosts, as the wire */
    return put(shape, "", 1);
}

static int histogram_metric(walker *w, Py_ssize_t scope, Py_ssize_t index, const metric_parts *m) {
    histogram_walk *h = (histogram_walk *)w;
    if (m->kind != 9) return 0;
    Py_ssize_t which = -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(h->names); i++) {
        PyObject *name = PyTuple_GET_ITEM(h->names, i);
        if (PyBytes_GET_SIZE(name) == m->name_len
            && (m->name_len == 0 || memcmp(PyBytes_AS_STRING(name), m->name, (size_t)m->name_len) == 0)) {
            which = i;
            break;
        }
    }
    if (which < 0) return 0;
    int buckets_wanted = PyObject_IsTrue(PyTuple_GET_ITEM(h->with_buckets, which));
    uint64_t temporality = 0;
    Py_ssize_t count = 0;
    buffer_t shape = {NULL, 0, 0}, numbers = {NULL, 0, 0};
    int rc = 0;
    cursor c = {m->data, m->data + m->data_len};
    while (rc == 0 && c.p < c.end) {
        uint64_t tag, n = 0;
        if (read_varint(&c, &tag) < 0) rc = -2;
        else if (tag == ((2 << 3) | 0)) rc = read_varint(&c, &temporality) < 0 ? -2 : 0;
        else if (tag == ((1 << 3) | 2)) {
            if (read_varint(&c, &n) < 0 || (uint64_t)(c.end - c.p) < n) {
                rc = -2;
            } else {
                rc = histogram_point(c.p, (Py_ssize_t)n, buckets_wanted, &shape, &numbers);
                c.p += n;
                count++;
            }
        } else if (skip_field(&c, tag) < 0) {
            rc = -2;
        }
    }
    if (rc == 0) {
        PyObject *entry = Py_BuildValue("(nnnKy#y#n)", scope, index, which, (unsigned long long)temporality,
                                        shape.data ? (const char *)shape.data : "", shape.len,
                                        numbers.data ? (const char *)numbers.data : "", numbers.len, count);
        rc = entry ? PyList_Append(h->current, entry) : -1;
        Py_XDECREF(entry);
    } else if (rc == -2) {
        PyErr_SetString(PyExc_ValueError, "malformed Histogram");
        rc = -1;
    }
    PyMem_Free(shape.data);
    PyMem_Free(numbers.data);
    return rc;
}

static PyObject *histograms(PyObject *self, PyObject *args) {
    Py_buffer buffer;
    PyObject *names, *with_buckets;
    if (!PyArg_ParseTuple(args, "y*O!O!", &buffer, &PyTuple_Type, &names, &PyTuple_Type, &with_buckets))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    int ok = PyTuple_GET_SIZE(with_buckets) == n;
    for (Py_ssize_t i = 0; ok && i < n; i++) ok = PyBytes_Check(PyTuple_GET_ITEM(names, i));
    if (!ok) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_TypeError, "names: a tuple of bytes; with_buckets: a flag for each");
        return NULL;
    }
    histogram_walk h = {{histogram_resource, histogram_metric, 0, 0}, PyList_New(0), NULL, names, with_buckets};
    PyObject *result = h.out ? walk((const uint8_t *)buffer.buf, buffer.len, &h.base, h.out) : NULL;
    PyBuffer_Release(&buffer);
    return result;
}

/* accumulate ---------------------------------------------------------------------------- */

/* The layouts shared with relay/points.py, which reads the constants from the module. */
#define REPLAN -1
#define CONFLICT -2
#define POINT_HEAD 40   /* numbers: start, time, sum, count, bucket count; then the counts */
#define STATE_HEAD 40   /* state: seen, start, sum, count, bucket count; then (durations) the counts */
#define PLAN_ENTRY 8    /* plan: int32 slot (-1: the point adds to none), u8 role, u8 labels cut, u16 buckets */
#define ROLES 5
#define USAGE_RECORD (24 + 16 * ROLES) /* time, generation, role mask, tokens by role, calls by role */
#define DURATION_HEAD 48 /* time, generation, sum, count, points, bucket count; then the counts */
#define MAX_BUCKETS 64
#define DURATION_RECORD (DURATION_HEAD + 8 * MAX_BUCKETS)

static uint64_t u64_at(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static double f64_at(const uint8_t *p) {
    double v;
    memcpy(&v, p, 8);
    return v;
}

/* What one point adds, by the temporality rules of UsageMetrics._grown; 0 for nothing. The
 * point's state record is updated; grown[] gets the bucket increases of a duration point. */
static int grown_by(const uint8_t *point, uint8_t *state, Py_ssize_t nb, int cumulative, int baseline_only,
                    uint64_t started_ns, double *total_out, uint64_t *count_out, uint64_t *grown) {
    uint64_t start = u64_at(point), count = u64_at(point + 24), size = u64_at(point + 32);
    double total = f64_at(point + 16);
    const uint8_t *buckets = point + POINT_HEAD;
    if (!(total >= 0)) return 0; /* not a number, or negative: adds nothing */
    for (Py_ssize_t i = 0; i < nb; i++) grown[i] = u64_at(buckets + 8 * i);
    if (cumulative) {
        uint64_t has = u64_at(state), last_start = u64_at(state + 8), last_count = u64_at(state + 24);
        uint64_t last_size = u64_at(state + 32);
        double last_total = f64_at(state + 16);
        uint8_t *last_buckets = state + STATE_HEAD;
        uint64_t one = 1;
        if (has && last_start == start && total >= last_total && count >= last_count && size == last_size) {
            for (Py_ssize_t i = 0; i < nb; i++) {
                uint64_t before = u64_at(last_buckets + 8 * i);
                grown[i] = grown[i] >= before ? grown[i] - before : 0;
            }
            total -= last_total;
            count -= last_count;
            memcpy(state + 16, point + 16, 16); /* total, count */
            memcpy(last_buckets, buckets, (size_t)(8 * nb));
        } else {
            memcpy(state, &one, 8);
            memcpy(state + 8, &start, 8);
            memcpy(state + 16, point + 16, 16);
            memcpy(state + 32, &size, 8);
            memcpy(last_buckets, buckets, (size_t)(8 * nb));
            if (!has && (baseline_only || start < started_ns)) return 0;
        }
    } else if (baseline_only) {
        return 0;
    }
    if (total == 0 && count == 0) return 0;
    *total_out = total;
    *count_out = count;
    return 1;
}

static int writable(Py_buffer *b, PyObject *o) { return PyObject_GetBuffer(o, b, PyBUF_WRITABLE); }

/*
 * accumulate(numbers, count, plan, state, durations, cumulative, baseline_only, started_ns, acc,
 *            generation, touched) -> labels cut on the points that added, or REPLAN / CONFLICT
 *
 * Adds what one metric's points grew by into the request's accumulator ``acc`` (see
 * the layouts above), updating each point's state. Nothing is changed when it returns REPLAN (a
 * point has another number of buckets than its plan, the point count differs, or usage points
 * differ in time) or CONFLICT (a usage slot already holds another time in this request). A slot first touched in this
 * generation is zeroed and its number appended to ``touched``.
 */
static PyObject *accumulate(PyObject *self, PyObject *args) {
    Py_buffer numbers, plan, state, acc;
    Py_ssize_t count;
    int durations, cumulative, baseline_only;
    unsigned long long started_ns, generation;
    PyObject *state_object, *acc_object, *touched;
    if (!PyArg_ParseTuple(args, "y*ny*OpppKOKO!", &numbers, &count, &plan, &state_object, &durations, &cumulative,
                          &baseline_only, &started_ns, &acc_object, &generation, &PyList_Type, &touched))
        return NULL;
    PyObject *result = NULL;
    int have_state = 0, have_acc = 0;
    if (writable(&state, state_object) < 0) goto done;
    have_state = 1;
    if (writable(&acc, acc_object) < 0) goto done;
    have_acc = 1;
    const uint8_t *num = numbers.buf, *pl = plan.buf;
    uint8_t *st = state.buf, *ac = acc.buf;
    Py_ssize_t record = durations ? DURATION_RECORD : USAGE_RECORD;
    if (plan.len != count * PLAN_ENTRY) goto replan;
    /* First pass: does every point fit its plan, and every usage slot this time? */
    Py_ssize_t at = 0, state_at = 0, timed = 0;
    uint64_t first_time = 0;
    int conflict = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (numbers.len - at < POINT_HEAD) goto replan;
        const uint8_t *entry = pl + i * PLAN_ENTRY;
        int32_t slot;
        memcpy(&slot, entry, 4);
        Py_ssize_t nb = durations ? (Py_ssize_t)u64_at(num + at + 32) : 0;
        uint16_t planned;
        memcpy(&planned, entry + 6, 2);
        if (durations && (nb != planned || nb > MAX_BUCKETS)) goto replan;
        if (numbers.len - at < POINT_HEAD + 8 * nb) goto replan;
        if (slot >= 0) {
            if ((slot + 1) * record > acc.len) goto replan;
            const uint8_t *rec = ac + slot * record;
            uint64_t time = u64_at(num + at + 8);
            if (!durations && timed++ && time != first_time) goto replan; /* priced by time: point by point */
            first_time = time;
            if (!durations && u64_at(rec + 8) == generation && u64_at(rec) != time) conflict = 1;
        }
        at += POINT_HEAD + 8 * nb;
        state_at += STATE_HEAD + 8 * planned;
    }
    if (at != numbers.len || state_at != state.len) goto replan;
    if (conflict) {
        result = PyLong_FromLong(CONFLICT);
        goto done;
    }
    /* Second pass: add. */
    long cut = 0;
    at = state_at = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const uint8_t *entry = pl + i * PLAN_ENTRY, *point = num + at;
        int32_t slot;
        memcpy(&slot, entry, 4);
        uint8_t role = entry[4], cut_here = entry[5];
        Py_ssize_t nb = durations ? (Py_ssize_t)u64_at(point + 32) : 0;
        uint8_t *point_state = st + state_at;
        at += POINT_HEAD + 8 * nb;
        state_at += STATE_HEAD + 8 * nb;
        if (slot < 0) continue;
        double total;
        uint64_t n, grown[MAX_BUCKETS];
        if (!grown_by(point, point_state, nb, cumulative, baseline_only, started_ns, &total, &n, grown)) continue;
        cut += cut_here;
        uint8_t *rec = ac + slot * record;
        if (u64_at(rec + 8) != generation) {
            memset(rec, 0, (size_t)record);
            memcpy(rec + 8, &generation, 8);
            memcpy(rec, point + 8, 8); /* the time */
            PyObject *number = PyLong_FromLong(slot);
            if (number == NULL || PyList_Append(touched, number) < 0) {
                Py_XDECREF(number);
                goto done;
            }
            Py_DECREF(number);
        }
        if (durations) {
            double sum = f64_at(rec + 16) + total;
            uint64_t calls = u64_at(rec + 24) + n, points = u64_at(rec + 32) + 1, size = (uint64_t)nb;
            memcpy(rec + 16, &sum, 8);
            memcpy(rec + 24, &calls, 8);
            memcpy(rec + 32, &points, 8);
            memcpy(rec + 40, &size, 8);
            for (Py_ssize_t b = 0; b < nb; b++) {
                uint64_t v = u64_at(rec + DURATION_HEAD + 8 * b) + grown[b];
                memcpy(rec + DURATION_HEAD + 8 * b, &v, 8);
            }
        } else {
            uint64_t mask = u64_at(rec + 16) | ((uint64_t)1 << role);
            double tokens = f64_at(rec + 24 + 8 * role) + total;
            uint64_t calls = u64_at(rec + 24 + 8 * ROLES + 8 * role) + n;
            memcpy(rec + 16, &mask, 8);
            memcpy(rec + 24 + 8 * role, &tokens, 8);
            memcpy(rec + 24 + 8 * ROLES + 8 * role, &calls, 8);
        }
    }
    result = PyLong_FromLong(cut);
    goto done;
replan:
    result = PyLong_FromLong(REPLAN);
done:
    PyBuffer_Release(&numbers);
    PyBuffer_Release(&plan);
    if (have_state) PyBuffer_Release(&state);
    if (have_acc) PyBuffer_Release(&acc);
    return result;
}

static PyMethodDef methods[] = {
    {"signatures", signatures, METH_VARARGS,
     "signatures(request_bytes, index, size) -> [(resource bytes, [signature per data point])], or None"},
    {"count", count, METH_VARARGS, "count(request_bytes) -> data points in the request, or None"},
    {"splice", splice, METH_VARARGS,
     "splice(request_bytes, additions) -> request bytes with additions[i] appended to data point i"},
    {"histograms", histograms, METH_VARARGS,
     "histograms(request_bytes, names, with_buckets) -> [(resource bytes, [(scope, metric, name, temporality, "
     "shape, numbers, count)])], or None"},
    {"accumulate", accumulate, METH_VARARGS,
     "accumulate(numbers, count, plan, state, durations, cumulative, baseline_only, started_ns, acc, generation, "
     "touched) -> labels cut, or REPLAN / CONFLICT"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_points", NULL, -1, methods};

PyMODINIT_FUNC PyInit__points(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL || PyModule_AddIntConstant(m, "REPLAN", REPLAN) < 0 || PyModule_AddIntConstant(m, "CONFLICT", CONFLICT) < 0
        || PyModule_AddIntConstant(m, "POINT_HEAD", POINT_HEAD) < 0 || PyModule_AddIntConstant(m, "STATE_HEAD", STATE_HEAD) < 0
        || PyModule_AddIntConstant(m, "PLAN_ENTRY", PLAN_ENTRY) < 0 || PyModule_AddIntConstant(m, "USAGE_RECORD", USAGE_RECORD) < 0
        || PyModule_AddIntConstant(m, "DURATION_RECORD", DURATION_RECORD) < 0
        || PyModule_AddIntConstant(m, "DURATION_HEAD", DURATION_HEAD) < 0
        || PyModule_AddIntConstant(m, "MAX_BUCKETS", MAX_BUCKETS) < 0) {
        Py_XDECREF(m);
        return NULL;
    }
    return m;
}
