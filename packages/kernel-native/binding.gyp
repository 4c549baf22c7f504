{
  "variables": { "cuda_home%": "<!(node -p \"process.env.CUDA_HOME || '/usr/local/cuda'\")" },
  "targets": [
    {
      "target_name": "trirun_native",
      "sources": ["<!@(node -p \"require('fs').readdirSync('src/addon').filter(f=>f.endsWith('.cc')).map(f=>'src/addon/'+f).join(' ')\")"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<(cuda_home)/include", "src/kernel"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-fexceptions", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": [
        "<!@(node -p \"require('fs').readdirSync('build-cuda').filter(f=>f.endsWith('.o')).map(f=>require('path').resolve('build-cuda',f)).join(' ')\")",
        "-L<(cuda_home)/lib64",
        "-lcudart_static",
        "-ldl",
        "-lrt",
        "-lpthread"
      ]
    }
  ]
}
