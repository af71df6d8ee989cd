// Half/bfloat16 conversions against the compiler's own IEEE conversions (an independent reference).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "model/storage.h"

using namespace seqit::model;

TEST(Storage, F16DecodeMatchesCompilerForEveryBitPattern) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    auto h = static_cast<uint16_t>(bits);
    _Float16 ref;
    std::memcpy(&ref, &h, 2);
    float expected = static_cast<float>(ref);
    float got = f16_to_f32(h);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << bits;
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(expected)) << bits;
    }
  }
}

TEST(Storage, F16EncodeRoundsToNearestEvenLikeCompiler) {
  std::mt19937 rng(7);
  std::vector<float> samples = {0.0f,     -0.0f,    1.0f,    65504.0f,  65519.0f, 65520.0f, 1e-8f,
                                5.96e-8f, 2.98e-8f, 6.1e-5f, -3.14159f, INFINITY, -INFINITY};
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns over the exponent range half can represent (plus some beyond).
    uint32_t bits = (rng() & 0x807fffff) | (static_cast<uint32_t>(90 + rng() % 60) << 23);
    samples.push_back(std::bit_cast<float>(bits));
  }
  for (float f : samples) {
    _Float16 ref = static_cast<_Float16>(f);
    uint16_t expected;
    std::memcpy(&expected, &ref, 2);
    ASSERT_EQ(f32_to_f16(f), expected) << f;
  }
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}

TEST(Storage, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties go to the even mantissa (1.0).
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);
  // 1 + 3*2^-8 is halfway between 1.0078125 (odd) and 1.015625 (even).
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82);
  EXPECT_EQ(bf16_to_f32(0xc0490000 >> 16), -3.140625f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  std::mt19937 rng(3);
  for (int i = 0; i < 100000; ++i) {
    float f = std::bit_cast<float>(static_cast<uint32_t>(rng()) & 0xbfffffff);
    double exact = f;
    float down = bf16_to_f32(f32_to_bf16(f));
    // The result is one of the two bf16 neighbours and at most half a unit away.
    uint32_t b = std::bit_cast<uint32_t>(f) & 0xffff0000;
    double lo = std::bit_cast<float>(b), hi = std::bit_cast<float>(b + 0x10000);
    ASSERT_TRUE(down == static_cast<float>(lo) || down == static_cast<float>(hi)) << f;
    ASSERT_LE(std::abs(down - exact), std::abs(hi - lo) / 2 + 0.0) << f;
  }
}

TEST(Storage, Q8_0DequantisesScaleTimesQuant) {
  uint8_t block[34];
  uint16_t scale = f32_to_f16(0.5f);
  std::memcpy(block, &scale, 2);
  for (int k = 0; k < 32; ++k) block[2 + k] = static_cast<uint8_t>(static_cast<int8_t>(k - 16));
  float out[32];
  decode_to_f32(StorageType::q8_0, block, 32, out);
  for (int k = 0; k < 32; ++k) EXPECT_EQ(out[k], 0.5f * (k - 16));
  EXPECT_EQ(*storage_bytes(StorageType::q8_0, 64), 68u);
  EXPECT_FALSE(storage_bytes(StorageType::q8_0, 33).has_value());
}
