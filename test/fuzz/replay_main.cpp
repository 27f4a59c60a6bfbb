// Runs the fuzz target over files, without libFuzzer: the regression inputs
// (test/fuzz/regressions) replayed by ctest under ASan/UBSan with gcc.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int
main(int argc, char** argv)
{
	size_t replayed = 0;
	for (int i = 1; i < argc; ++i) {
		std::vector<std::filesystem::path> files;
		if (std::filesystem::is_directory(argv[i])) {
			for (const auto& entry : std::filesystem::directory_iterator(argv[i]))
				files.push_back(entry.path());
		} else {
			files.emplace_back(argv[i]);
		}
		for (const auto& file : files) {
			std::ifstream in(file, std::ios::binary);
			std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
			LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
			++replayed;
		}
	}
	std::printf("replayed %zu inputs\n", replayed);
	return replayed > 0 ? 0 : 1;
}
