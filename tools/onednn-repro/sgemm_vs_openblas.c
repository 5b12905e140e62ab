// The measurement behind dropping OpenBLAS (issue 13): OpenBLAS cblas_sgemm vs oneDNN dnnl_sgemm,
// one thread, on im2col and Gemm shapes of the zoo. Not built by the package; needs libopenblas-dev:
//   gcc -O2 sgemm_vs_openblas.c -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas -ldnnl -lgomp
//   ./a.out; OPENBLAS_CORETYPE=SkylakeX ./a.out; OPENBLAS_CORETYPE=Haswell DNNL_MAX_CPU_ISA=AVX2 ./a.out
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
void omp_set_num_threads(int);
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  openblas_set_num_threads(1); omp_set_num_threads(1);
  int shapes[][3]={{64,1024,576},{64,64,576},{128,16,1152},{256,4,2304},{2,1000,2048},{2,1000,512},{16,256,64},{512,49,4608},{64,3136,64}};
  int ns=sizeof(shapes)/sizeof(shapes[0]);
  printf("%-18s %10s %10s %8s\n","M,N,K","openblas us","dnnl us","ratio");
  for(int s=0;s<ns;s++){int M=shapes[s][0],N=shapes[s][1],K=shapes[s][2];
    float*A=malloc(4L*M*K),*B=malloc(4L*K*N),*C=malloc(4L*M*N);
    for(long i=0;i<(long)M*K;i++)A[i]=(i%7)*0.1f; for(long i=0;i<(long)K*N;i++)B[i]=(i%5)*0.1f;
    double bo=1e9,bd=1e9; int reps= (long)M*N*K>1e8?5:200;
    for(int r=0;r<7;r++){
      double t=now(); for(int i=0;i<reps;i++) cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,M,N,K,1,A,K,B,N,0,C,N); t=(now()-t)/reps; if(t<bo)bo=t;
      t=now(); for(int i=0;i<reps;i++) dnnl_sgemm('N','N',M,N,K,1,A,K,B,N,0,C,N); t=(now()-t)/reps; if(t<bd)bd=t;
    }
    printf("%5d,%5d,%5d   %10.1f %10.1f %8.2f\n",M,N,K,bo*1e6,bd*1e6,bd/bo);
  }
}
