// Python bindings of the rANS core (module neurocodec.entropy._rans). Thin: buffers in and out
// zero-copy, the GIL released while coding, C++ errors mapped to neurocodec.errors.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/vector.h>

#include "arm.hpp"
#include "rans.hpp"

namespace nb = nanobind;
using namespace nb::literals;
namespace r = neurocodec::rans;

using IntArray = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using OutArray = nb::ndarray<int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using LongArray = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

namespace {

nb::bytes make_bytes(const std::vector<uint8_t>& header, const std::vector<r::EncodedChunk>& chunks) {
  const size_t size = r::stream_size(header, chunks);
  PyObject* obj = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(size));
  if (!obj) throw nb::python_error();
  r::write_stream(header, chunks, reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(obj)));
  return nb::steal<nb::bytes>(obj);
}

void check_same_length(const IntArray& values, const IntArray& indexes) {
  if (values.shape(0) != indexes.shape(0))
    throw r::ArgumentError("values and indexes differ in length (" + std::to_string(values.shape(0)) + " vs " +
                           std::to_string(indexes.shape(0)) + ")");
}

class PyStreamDecoder {
 public:
  PyStreamDecoder(std::shared_ptr<const r::TableSet> ts, nb::bytes data)
      : data_(data), dec_(std::move(ts), reinterpret_cast<const uint8_t*>(data.c_str()), data.size()) {}

  void pull(IntArray indexes, OutArray out) {
    if (broken_) throw r::StreamError("this decoder already failed; start a new one");
    if (out.shape(0) != indexes.shape(0)) throw r::ArgumentError("out and indexes differ in length");
    nb::gil_scoped_release nogil;
    try {
      dec_.pull(indexes.data(), out.data(), indexes.shape(0));
    } catch (...) {
      broken_ = true;
      throw;
    }
  }
  void finish() const { dec_.finish(); }
  uint64_t num_symbols() const { return dec_.num_symbols(); }
  uint64_t position() const { return dec_.position(); }

 private:
  nb::bytes data_;  // keeps the buffer alive
  r::StreamDecoder dec_;
  bool broken_ = false;
};

std::vector<int64_t> to_vector(const LongArray& a) { return {a.data(), a.data() + a.shape(0)}; }

size_t total_size(const std::vector<neurocodec::arm::Size>& sizes) {
  size_t n = 0;
  for (const auto& [h, w] : sizes) {
    if (h < 1 || w < 1) throw r::ArgumentError("grid sizes must be positive");
    n += size_t(h) * size_t(w);
  }
  return n;
}

}  // namespace

NB_MODULE(_rans, m) {
  m.doc() = "neurocodec rANS core (docs/bitstream.md); use neurocodec.entropy.coder, not this module.";

  nb::object errors = nb::module_::import_("neurocodec.errors");
  static nb::object bitstream_error = errors.attr("BitstreamError");
  static nb::object table_mismatch = errors.attr("TableMismatchError");
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const r::TableMismatch& e) {
      PyErr_SetString(table_mismatch.ptr(), e.what());
    } catch (const r::StreamError& e) {
      PyErr_SetString(bitstream_error.ptr(), e.what());
    } catch (const r::ArgumentError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.attr("VERSION") = r::kVersion;
  m.attr("MAX_LANES") = r::kMaxLanes;

  nb::class_<r::TableSet>(m, "TableSet")
      .def(
          "__init__",
          [](r::TableSet* self, IntArray cdf_flat, IntArray sizes, IntArray offsets) {
            if (sizes.shape(0) != offsets.shape(0)) throw r::ArgumentError("sizes and offsets differ in length");
            new (self) r::TableSet(cdf_flat.data(), cdf_flat.shape(0), sizes.data(), offsets.data(), sizes.shape(0));
          },
          "cdf_flat"_a, "sizes"_a, "offsets"_a)
      .def_prop_ro("num_tables", &r::TableSet::num_tables)
      .def_prop_ro("hash", &r::TableSet::hash)
      .def_prop_ro("lut_bytes", &r::TableSet::lut_bytes);

  m.def(
      "encode",
      [](const r::TableSet& ts, IntArray values, IntArray indexes, int chunk_bits, int lanes, int threads) {
        check_same_length(values, indexes);
        std::vector<r::EncodedChunk> chunks;
        {
          nb::gil_scoped_release nogil;
          chunks = r::encode_chunks(ts, values.data(), indexes.data(), values.shape(0), chunk_bits, lanes, threads);
        }
        return make_bytes(r::stream_header(chunks, chunk_bits, lanes, ts.hash(), values.shape(0)), chunks);
      },
      "tables"_a, "values"_a, "indexes"_a, "chunk_bits"_a, "lanes"_a, "threads"_a);

  m.def(
      "decode",
      [](const r::TableSet& ts, nb::bytes data, IntArray indexes, OutArray out, int threads) {
        if (out.shape(0) != indexes.shape(0)) throw r::ArgumentError("out and indexes differ in length");
        const auto* p = reinterpret_cast<const uint8_t*>(data.c_str());
        const size_t size = data.size();
        nb::gil_scoped_release nogil;
        r::decode_stream(ts, p, size, indexes.data(), indexes.shape(0), out.data(), threads);
      },
      "tables"_a, "data"_a, "indexes"_a, "out"_a, "threads"_a);

  m.def(
      "stream_info",
      [](nb::bytes data) {
        const r::StreamLayout L =
            r::parse_stream(reinterpret_cast<const uint8_t*>(data.c_str()), data.size(), nullptr);
        nb::dict d;
        d["version"] = int(r::kVersion);
        d["chunk_bits"] = L.chunk_bits;
        d["lanes"] = L.lanes;
        d["table_hash"] = L.hash;
        d["num_symbols"] = L.num_symbols;
        d["num_chunks"] = L.num_chunks();
        d["header_bytes"] = L.header_size;
        return d;
      },
      "data"_a);

  nb::class_<r::StreamEncoder>(m, "StreamEncoder")
      .def(nb::init<std::shared_ptr<const r::TableSet>, int, int>(), "tables"_a, "chunk_bits"_a, "lanes"_a)
      .def(
          "push",
          [](r::StreamEncoder& self, IntArray values, IntArray indexes) {
            if (self.finished()) throw r::ArgumentError("this encoder is finished");
            check_same_length(values, indexes);
            nb::gil_scoped_release nogil;
            self.push(values.data(), indexes.data(), values.shape(0));
          },
          "values"_a, "indexes"_a)
      .def("finish",
           [](r::StreamEncoder& self) {
             if (self.finished()) throw r::ArgumentError("this encoder is finished");
             {
               nb::gil_scoped_release nogil;
               self.finish();
             }
             return make_bytes(self.header(), self.chunks());
           })
      .def_prop_ro("num_symbols", &r::StreamEncoder::num_symbols);

  nb::class_<PyStreamDecoder>(m, "StreamDecoder")
      .def(nb::init<std::shared_ptr<const r::TableSet>, nb::bytes>(), "tables"_a, "data"_a)
      .def("pull", &PyStreamDecoder::pull, "indexes"_a, "out"_a)
      .def("finish", &PyStreamDecoder::finish)
      .def_prop_ro("num_symbols", &PyStreamDecoder::num_symbols)
      .def_prop_ro("position", &PyStreamDecoder::position);

  // The c3 codec's integer ARM (arm.hpp).
  namespace a = neurocodec::arm;
  nb::class_<a::Arm>(m, "Arm")
      .def(
          "__init__",
          [](a::Arm* self, int hidden, IntArray dy, IntArray dx, int coarse_kernel, LongArray w1, LongArray b1,
             LongArray w2, LongArray b2, LongArray w3, LongArray b3, int kw, int act_bits, int mean_bits,
             int64_t act_max, int64_t log_scale0, int64_t log_scale_step, int scales, int64_t latent_max) {
            if (dy.shape(0) != dx.shape(0)) throw r::ArgumentError("dy and dx differ in length");
            a::Arm arm;
            arm.hidden = hidden;
            arm.dy.assign(dy.data(), dy.data() + dy.shape(0));
            arm.dx.assign(dx.data(), dx.data() + dx.shape(0));
            arm.coarse_kernel = coarse_kernel;
            arm.w1 = to_vector(w1), arm.b1 = to_vector(b1), arm.w2 = to_vector(w2), arm.b2 = to_vector(b2);
            arm.w3 = to_vector(w3), arm.b3 = to_vector(b3);
            arm.kw = kw, arm.act_bits = act_bits, arm.mean_bits = mean_bits, arm.act_max = act_max;
            arm.log_scale0 = log_scale0, arm.log_scale_step = log_scale_step, arm.scales = scales;
            arm.latent_max = latent_max;
            arm.check();
            new (self) a::Arm(std::move(arm));
          },
          "hidden"_a, "dy"_a, "dx"_a, "coarse_kernel"_a, "w1"_a, "b1"_a, "w2"_a, "b2"_a, "w3"_a, "b3"_a, "kw"_a,
          "act_bits"_a, "mean_bits"_a, "act_max"_a, "log_scale0"_a, "log_scale_step"_a, "scales"_a,
          "latent_max"_a);

  m.def(
      "arm_symbols",
      [](const a::Arm& arm, const std::vector<a::Size>& sizes, const std::vector<IntArray>& grids, OutArray values,
         OutArray indexes) {
        const size_t n = total_size(sizes);
        if (grids.size() != sizes.size()) throw r::ArgumentError("one grid per size");
        std::vector<const int32_t*> pointers;
        for (size_t g = 0; g < grids.size(); ++g) {
          if (grids[g].shape(0) != size_t(sizes[g].first) * size_t(sizes[g].second))
            throw r::ArgumentError("a grid's length differs from its size");
          for (size_t i = 0; i < grids[g].shape(0); ++i)
            if (std::abs(int64_t(grids[g].data()[i])) > arm.latent_max)
              throw r::ArgumentError("a latent exceeds the ARM's bound");
          pointers.push_back(grids[g].data());
        }
        if (values.shape(0) != n || indexes.shape(0) != n) throw r::ArgumentError("values and indexes need one entry per latent");
        nb::gil_scoped_release nogil;
        a::symbols(arm, sizes, pointers, values.data(), indexes.data());
      },
      "arm"_a, "sizes"_a, "grids"_a, "values"_a, "indexes"_a);

  m.def(
      "arm_decode",
      [](const a::Arm& arm, std::shared_ptr<const r::TableSet> ts, nb::bytes data, const std::vector<a::Size>& sizes,
         OutArray out) {
        if (out.shape(0) != total_size(sizes)) throw r::ArgumentError("out needs one entry per latent");
        const auto* p = reinterpret_cast<const uint8_t*>(data.c_str());
        const size_t size = data.size();
        nb::gil_scoped_release nogil;
        r::StreamDecoder stream(std::move(ts), p, size);
        if (stream.num_symbols() != out.shape(0))
          throw r::StreamError("the stream holds " + std::to_string(stream.num_symbols()) + " symbols, the grids " +
                               std::to_string(out.shape(0)));
        a::decode(arm, stream, sizes, out.data());
      },
      "arm"_a, "tables"_a, "data"_a, "sizes"_a, "out"_a);
}
